//! Load through a router with `wrk` (closed loop, a random tenant and customer per
//! request), the rows it yields, and their table: what the router benchmarks share.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;

use crate::{ControlPlane, TenantRouter};

pub type Error = Box<dyn std::error::Error>;

/// Concurrent clients of every run.
pub const CONNECTIONS: usize = 32;

/// One row of a benchmark's table.
pub struct Row {
    pub name: String,
    pub per_second: f64,
    pub mean_ms: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Answers other than 2xx, and socket errors.
    pub errors: Option<u64>,
    /// Connections the router opened during the run.
    pub opened: Option<u64>,
    /// The row this one is compared with.
    pub reference: usize,
    /// The lowest and highest req/s over the rounds (this row is the median round).
    pub range: Option<(f64, f64)>,
    /// Each round's req/s, in the order the rounds ran: a ratio to a row measured in the
    /// same rounds is taken round by round.
    pub rounds: Vec<f64>,
}

impl Row {
    /// A row of a reference measured outside `wrk`.
    pub fn new(name: impl Into<String>, per_second: f64, mean_ms: f64) -> Self {
        Self {
            name: name.into(),
            per_second,
            mean_ms,
            p50_ms: None,
            p99_ms: None,
            errors: None,
            opened: None,
            reference: 0,
            range: None,
            rounds: Vec::new(),
        }
    }
}

/// Runs a measurement `rounds` times and keeps the median round by req/s, with the range:
/// on a shared 2-core host one 10-second run moves by a third from the next.
pub async fn median<F, Fut>(rounds: usize, mut measure: F) -> Result<Row, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Row, Error>>,
{
    let mut all = Vec::new();
    for _ in 0..rounds.max(1) {
        all.push(measure().await?);
    }
    // Its rounds ran back to back, not beside another row's: a ratio to it is of medians.
    let mut row = median_of(all);
    row.rounds.clear();
    Ok(row)
}

/// The median of a row's rounds (given in the order they ran) by req/s, with the range
/// and every round's figure.
///
/// # Panics
/// When `rounds` is empty.
pub fn median_of(mut rounds: Vec<Row>) -> Row {
    assert!(!rounds.is_empty(), "a row needs a round");
    let figures: Vec<f64> = rounds.iter().map(|row| row.per_second).collect();
    rounds.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    let range = (rounds[0].per_second, rounds[rounds.len() - 1].per_second);
    let mut middle = rounds.swap_remove(rounds.len() / 2);
    middle.range = (figures.len() > 1).then_some(range);
    middle.rounds = figures;
    middle
}

/// Rows measured round by round: each round runs every row once, so a slow minute of the
/// host lands on all of them rather than on one row's rounds.
pub struct Rounds {
    rows: Vec<Vec<Row>>,
}

impl Rounds {
    pub fn new(rows: usize) -> Self {
        Self {
            rows: (0..rows).map(|_| Vec::new()).collect(),
        }
    }

    /// Adds row `index`'s run of this round.
    pub fn add(&mut self, index: usize, row: Row) {
        self.rows[index].push(row);
    }

    /// Each row's median round, in row order.
    pub fn medians(self) -> Vec<Row> {
        self.rows.into_iter().map(median_of).collect()
    }
}

/// `row` against `reference` as printed: `0.483x (0.441-0.496 by round)`.
pub fn ratio_text(row: &Row, reference: &Row) -> String {
    let (middle, range) = ratio(row, reference);
    let range = range.map_or_else(String::new, |(low, high)| {
        format!(" ({low:.3}-{high:.3} by round)")
    });
    format!("{middle:.3}x{range}")
}

/// `row` against `reference`: the median of the ratios of the rounds they ran together,
/// with their range when there are several; else the ratio of the two medians.
pub fn ratio(row: &Row, reference: &Row) -> (f64, Option<(f64, f64)>) {
    if row.rounds.len() < 2 || row.rounds.len() != reference.rounds.len() {
        return (row.per_second / reference.per_second, None);
    }
    let mut ratios: Vec<f64> = row
        .rounds
        .iter()
        .zip(&reference.rounds)
        .map(|(figure, reference)| figure / reference)
        .collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 2],
        Some((ratios[0], ratios[ratios.len() - 1])),
    )
}

/// The cumulative distribution of Zipf's law over `count` ranks (the first the likeliest):
/// a uniform draw in [0, 1) picks the first rank whose bound exceeds it.
pub fn zipf_cdf(count: usize, exponent: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=count)
        .map(|rank| 1.0 / (rank as f64).powf(exponent))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut running = 0.0;
    weights
        .iter()
        .map(|weight| {
            running += weight / total;
            running
        })
        .collect()
}

/// A wrk script that sends each request as a random (tenant token, customer id) pair: the
/// tenant uniformly, or by Zipf's law with exponent `zipf` (the first tenant the busiest).
/// Each wrk thread runs the script in its own Lua state: each is seeded apart (`setup`
/// numbers the threads), or both would draw the same tenants in step, and every second
/// request would find its tenant's connection just opened by its twin.
pub fn lua_script(tenants: &[(String, Vec<String>)], zipf: Option<f64>) -> String {
    let mut script = String::from("local cdf = {");
    if let Some(exponent) = zipf {
        for bound in zipf_cdf(tenants.len(), exponent) {
            let _ = write!(script, "{bound:.9},");
        }
    }
    script.push_str("}\nlocal tenants = {\n");
    for (token, ids) in tenants {
        let _ = write!(script, "  {{ \"{token}\", {{");
        for id in ids {
            let _ = write!(script, "\"{id}\",");
        }
        script.push_str("} },\n");
    }
    script.push_str(
        "}\n\
         local threads = 0\n\
         setup = function(thread)\n\
           threads = threads + 1\n\
           thread:set(\"thread_number\", threads)\n\
         end\n\
         init = function(args)\n\
           math.randomseed(os.time() * 1000 + thread_number)\n\
         end\n\
         local function pick()\n\
           if #cdf == 0 then return tenants[math.random(#tenants)] end\n\
           local r, low, high = math.random(), 1, #cdf\n\
           while low < high do\n\
             local middle = math.floor((low + high) / 2)\n\
             if cdf[middle] < r then low = middle + 1 else high = middle end\n\
           end\n\
           return tenants[low]\n\
         end\n\
         request = function()\n\
           local tenant = pick()\n\
           local id = tenant[2][math.random(#tenant[2])]\n\
           return wrk.format(\"GET\", \"/v1/customers/\" .. id, { [\"Authorization\"] = \"Bearer \" .. tenant[1] })\n\
         end\n\
         done = function(summary, latency, requests)\n\
           io.write(string.format(\"non2xx %d\\n\", summary.errors.status))\n\
         end\n",
    );
    script
}

/// Writes a script for `tenants` to the temporary directory as `name`.
pub fn write_script(
    name: &str,
    tenants: &[(String, Vec<String>)],
    zipf: Option<f64>,
) -> Result<std::path::PathBuf, Error> {
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, lua_script(tenants, zipf))?;
    Ok(path)
}

/// A wrk run through the router, with the connections the router opened meanwhile.
pub async fn through_router(
    router: &TenantRouter,
    name: &str,
    script: &Path,
    seconds: u64,
    reference: usize,
) -> Result<Row, Error> {
    let before = opened(router).await;
    let mut row = wrk(name, &router.base_url, script, seconds)?;
    row.opened = Some(opened(router).await.saturating_sub(before));
    row.reference = reference;
    Ok(row)
}

/// Connections the router has opened so far, over every server.
pub async fn opened(router: &TenantRouter) -> u64 {
    router
        .metric_sum(|line| line.starts_with("tenancy_router_server_connections_opened_total{"))
        .await as u64
}

/// `wrk` with [`CONNECTIONS`] clients on two threads for `seconds`.
pub fn wrk(name: &str, base_url: &str, script: &Path, seconds: u64) -> Result<Row, Error> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            // Longer than the router's bounded wait for a connection (5 s in the benches):
            // a request that waited is counted by its answer, not cut off at wrk's 2 s.
            "--timeout",
            "10s",
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(base_url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let value_after = |label: &str| -> Option<String> {
        text.lines()
            .find(|line| line.trim_start().starts_with(label))
            .and_then(|line| line.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let per_second: f64 = value_after("Requests/sec:")
        .ok_or_else(|| format!("wrk said: {text}"))?
        .parse()?;
    let non_2xx: u64 = value_after("non2xx").ok_or("non2xx")?.parse()?;
    // `Socket errors: connect 0, read 0, write 0, timeout 0`
    let socket_errors: u64 = text
        .lines()
        .find(|line| line.trim_start().starts_with("Socket errors:"))
        .map(|line| {
            line.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Row {
        p50_ms: Some(wrk_ms(&value_after("50%").ok_or("p50")?)?),
        p99_ms: Some(wrk_ms(&value_after("99%").ok_or("p99")?)?),
        errors: Some(non_2xx + socket_errors),
        ..Row::new(
            name,
            per_second,
            wrk_ms(&value_after("Latency").ok_or("mean")?)?,
        )
    })
}

/// wrk prints latencies as `512.00us`, `1.23ms` or `1.01s`.
fn wrk_ms(value: &str) -> Result<f64, Error> {
    Ok(if let Some(us) = value.strip_suffix("us") {
        us.parse::<f64>()? / 1000.0
    } else if let Some(ms) = value.strip_suffix("ms") {
        ms.parse()?
    } else if let Some(s) = value.strip_suffix('s') {
        s.parse::<f64>()? * 1000.0
    } else {
        value.parse()?
    })
}

/// Prints the rows, each with its ratio to its reference row.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<42} {:>8} {:>13} {:>8} {:>8} {:>8} {:>7} {:>7}  vs",
        "path", "req/s", "range", "mean ms", "p50 ms", "p99 ms", "errors", "opens"
    );
    let cell =
        |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"));
    let count =
        |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |value| value.to_string());
    for (index, row) in rows.iter().enumerate() {
        let reference = &rows[row.reference];
        println!(
            "{:<42} {:>8.0} {:>13} {:>8.2} {:>8} {:>8} {:>7} {:>7}  {}",
            row.name,
            row.per_second,
            row.range.map_or_else(
                || "-".to_owned(),
                |(low, high)| format!("{low:.0}-{high:.0}")
            ),
            row.mean_ms,
            cell(row.p50_ms),
            cell(row.p99_ms),
            count(row.errors),
            count(row.opened),
            if row.reference == index {
                "(reference)".to_owned()
            } else {
                format!("{} {}", ratio_text(row, reference), reference.name)
            }
        );
    }
}

/// A process's resident memory (`VmRSS`), MiB.
pub fn resident_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The variable `name` parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Each tenant's role and its password (opened from the catalog), in the order given.
pub async fn tenant_roles(
    app: &ControlPlane,
    tenants: &[&serde_json::Value],
) -> Result<Vec<(String, String)>, Error> {
    let ids = tenants
        .iter()
        .map(|tenant| Ok(tenant["id"].as_str().ok_or("id")?.parse::<uuid::Uuid>()?))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut catalog = crate::connect(&app.database_url).await;
    let sealed: std::collections::HashMap<uuid::Uuid, Vec<u8>> =
        sqlx::query_as("SELECT id, app_password FROM tenants WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut catalog)
            .await?
            .into_iter()
            .collect();
    ids.iter()
        .map(|id| {
            let password = app.sealer.open_secret(
                &format!("tenant:{id}:app_password"),
                sealed.get(id).ok_or("no such tenant")?,
            )?;
            Ok((
                format!("t_{}_app", id.simple()),
                password.expose_secret().to_owned(),
            ))
        })
        .collect()
}

/// A new connection per read, as the tenants' roles, to `targets` in turn from
/// [`CONNECTIONS`] clients for `seconds`: the rate at which these servers open connections
/// to these databases, which bounds any router whose budget is far below its tenants.
pub async fn connect_each(
    name: &str,
    targets: Arc<Vec<tokio_postgres::Config>>,
    seconds: u64,
) -> Result<Row, Error> {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (targets, next, failed) = (targets.clone(), next.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let target = &targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()];
                let started = Instant::now();
                let read = async {
                    let (client, connection) = target.connect(tokio_postgres::NoTls).await?;
                    let driver = tokio::spawn(connection);
                    client
                        .query("SELECT id, name FROM app.customers LIMIT 1", &[])
                        .await?;
                    drop(client);
                    let _ = driver.await;
                    Ok::<_, tokio_postgres::Error>(())
                };
                match read.await {
                    Ok(()) => latencies.push(started.elapsed()),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await?);
    }
    latencies.sort();
    let mean =
        latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0 / latencies.len().max(1) as f64;
    let at = |percent: usize| {
        latencies
            .get((latencies.len() * percent / 100).min(latencies.len().saturating_sub(1)))
            .map(|latency| latency.as_secs_f64() * 1000.0)
    };
    Ok(Row {
        p50_ms: at(50),
        p99_ms: at(99),
        errors: Some(failed.load(Ordering::Relaxed)),
        ..Row::new(name, latencies.len() as f64 / seconds as f64, mean)
    })
}
