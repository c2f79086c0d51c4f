//! Usage charts as SVG, drawn on the server: a bar per hour or day, a title per bar (the
//! figure on hover and for screen readers), the scale's top and the period's ends as text.
//! Only numbers and dates go into the SVG, so it is inserted into the page as it is.

use std::fmt::Write;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};

use super::format;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
/// Room under the bars for the period's ends.
const AXIS: f64 = 18.0;

/// One bar: its figure, and what its title says.
struct Bar {
    value: f64,
    title: String,
}

/// A bar chart; `limit` draws a dashed line at that value (a plan's limit).
fn bars(label: &str, bars: &[Bar], limit: Option<(f64, String)>, ends: (&str, &str)) -> String {
    let top = bars
        .iter()
        .map(|bar| bar.value)
        .chain(limit.as_ref().map(|(value, _)| *value))
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let plot = HEIGHT - AXIS;
    let step = WIDTH / bars.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">"#
    );
    let _ = write!(
        svg,
        r#"<line class="axis" x1="0" y1="{plot}" x2="{WIDTH}" y2="{plot}"/>"#
    );
    for (index, bar) in bars.iter().enumerate() {
        let height = (bar.value / top * (plot - 4.0)).max(if bar.value > 0.0 { 1.0 } else { 0.0 });
        let x = index as f64 * step;
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{x:.2}" y="{:.2}" width="{:.2}" height="{height:.2}"><title>{}</title></rect>"#,
            plot - height,
            (step * 0.8).max(0.5),
            bar.title
        );
    }
    if let Some((value, text)) = limit {
        let y = plot - value / top * (plot - 4.0);
        let _ = write!(
            svg,
            r#"<line class="limit" x1="0" y1="{y:.2}" x2="{WIDTH}" y2="{y:.2}"><title>{text}</title></line>"#
        );
    }
    let _ = write!(
        svg,
        r#"<text class="tick" x="0" y="{}">{}</text><text class="tick" x="{WIDTH}" y="{}" text-anchor="end">{}</text></svg>"#,
        HEIGHT - 4.0,
        ends.0,
        HEIGHT - 4.0,
        ends.1
    );
    svg
}

/// Requests per hour over the 168 hours to `now`, from `(hour, requests)` rows (hours
/// without requests are absent). Gives the SVG and a sentence that says the same.
pub fn requests_per_hour(
    rows: &[catalog::usage::HourlyRequests],
    now: DateTime<Utc>,
) -> (String, String) {
    let last = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
    let first = last - TimeDelta::hours(167);
    let mut values = [0_i64; 168];
    for row in rows {
        let index = (row.hour - first).num_hours();
        if let Ok(index) = usize::try_from(index)
            && let Some(slot) = values.get_mut(index)
        {
            *slot += row.requests;
        }
    }
    let bars_: Vec<Bar> = values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let hour = first + TimeDelta::hours(index as i64);
            Bar {
                value: *value as f64,
                title: format!(
                    "{}: {} requests",
                    hour.format("%a %d %b %H:00"),
                    format::count(*value)
                ),
            }
        })
        .collect();
    let total: i64 = values.iter().sum();
    let peak = values.iter().copied().max().unwrap_or(0);
    let summary = format!(
        "{} requests in the last 7 days; the busiest hour had {}.",
        format::count(total),
        format::count(peak)
    );
    let svg = bars(
        "Requests per hour, last 7 days",
        &bars_,
        None,
        (
            &first.format("%a %d %b").to_string(),
            &last.format("%a %d %b %H:00").to_string(),
        ),
    );
    (svg, summary)
}

/// Size per day over `days` days to `today`, with the plan's limit as a line.
pub fn storage_per_day(
    rows: &[catalog::usage::DailyStorage],
    today: NaiveDate,
    days: i64,
    limit_bytes: i64,
) -> (String, String) {
    let first = today - TimeDelta::days(days - 1);
    let bars_: Vec<Bar> = (0..days)
        .map(|offset| {
            let day = first + TimeDelta::days(offset);
            let bytes = rows.iter().find(|row| row.day == day).map(|row| row.bytes);
            Bar {
                value: bytes.unwrap_or(0) as f64,
                title: match bytes {
                    Some(bytes) => format!("{}: {}", day.format("%d %b"), format::bytes(bytes)),
                    None => format!("{}: not sampled", day.format("%d %b")),
                },
            }
        })
        .collect();
    let latest = rows.last().map(|row| row.bytes);
    let summary = match latest {
        Some(bytes) => format!(
            "{} used of {}; sampled on {} of the last {days} days.",
            format::bytes(bytes),
            format::bytes(limit_bytes),
            rows.len()
        ),
        None => "Not sampled yet.".to_owned(),
    };
    let svg = bars(
        &format!("Storage per day, last {days} days"),
        &bars_,
        Some((
            limit_bytes as f64,
            format!("the plan's limit: {}", format::bytes(limit_bytes)),
        )),
        (
            &first.format("%d %b").to_string(),
            &today.format("%d %b").to_string(),
        ),
    );
    (svg, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hour_of_the_week_is_a_bar_and_requests_land_in_their_hour() {
        let now = Utc::now();
        let hour = now.duration_trunc(TimeDelta::hours(1)).expect("an hour");
        let rows = vec![
            catalog::usage::HourlyRequests { hour, requests: 30 },
            catalog::usage::HourlyRequests {
                hour: hour - TimeDelta::hours(5),
                requests: 12,
            },
            // Older than the week: left out.
            catalog::usage::HourlyRequests {
                hour: hour - TimeDelta::hours(200),
                requests: 1_000,
            },
        ];
        let (svg, summary) = requests_per_hour(&rows, now);
        assert_eq!(svg.matches("<rect").count(), 168);
        assert_eq!(
            summary,
            "42 requests in the last 7 days; the busiest hour had 30."
        );
        assert!(svg.contains(": 30 requests</title>"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn storage_has_a_bar_per_day_and_the_limit() {
        let today = Utc::now().date_naive();
        let rows = vec![catalog::usage::DailyStorage {
            day: today,
            bytes: 5 * 1_048_576,
        }];
        let (svg, summary) = storage_per_day(&rows, today, 30, 100 * 1_048_576);
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(svg.contains(r#"class="limit""#));
        assert_eq!(
            summary,
            "5.0 MiB used of 100 MiB; sampled on 1 of the last 30 days."
        );
    }
}
