//! What the HTTP benchmarks share: closed-loop load through a router and the figures it
//! yields (throughput, latency quantiles, errors), printed against a baseline of the same
//! run.

pub mod load;

use std::time::{Duration, Instant};

use reqwest::Method;

use crate::{ControlPlane, TenantRouter, json};

/// A platform for a benchmark: a control plane with its PostgreSQL server registered
/// (150 connections), the standard plan's rate limit lifted (it would turn the load into
/// 429s), a tenant `slug`, and a router that waits up to 5 s for a connection. The
/// super-admin's token comes with it.
pub async fn platform(slug: &str) -> (ControlPlane, String, TenantRouter) {
    let app = ControlPlane::start_with(&[("TENANCY_WARM_POOL_SIZE", "2")]).await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 150)
        .await;
    lift_rate_limit(&app, &admin).await;
    let (status, body) = app.create_tenant(&admin, slug).await;
    assert_eq!(status, 201, "{body}");
    let router = app.start_router(&[("TENANCY_POOL_WAIT", "5s")]).await;
    (app, admin, router)
}

/// Lifts the standard plan's request rate for a run.
pub async fn lift_rate_limit(app: &ControlPlane, admin: &str) {
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/plans/standard",
            Some(admin),
            Some(json!({ "limits": { "requests_per_minute": 100_000_000 } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// One phase's figures.
pub struct Figures {
    pub name: &'static str,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
}

impl Figures {
    /// From the latencies of the successful requests of a `period`.
    pub fn from_latencies(
        name: &'static str,
        mut latencies: Vec<Duration>,
        errors: usize,
        period: Duration,
    ) -> Self {
        latencies.sort();
        let at = |quantile: f64| {
            latencies
                .get(
                    ((latencies.len() as f64 * quantile) as usize)
                        .min(latencies.len().saturating_sub(1)),
                )
                .map_or(f64::NAN, |latency| latency.as_secs_f64() * 1000.0)
        };
        Self {
            name,
            per_second: latencies.len() as f64 / period.as_secs_f64(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            errors,
        }
    }
}

/// Prints `results` as a table, each against the first (the baseline).
pub fn print_table(title: &str, results: &[Figures]) {
    let baseline = results.first().map_or(f64::NAN, |first| first.per_second);
    println!("\n{title}");
    println!(
        "{:<40} {:>10} {:>9} {:>9} {:>7} {:>12}",
        "what", "req/s", "p50 ms", "p99 ms", "errors", "vs baseline"
    );
    for figures in results {
        println!(
            "{:<40} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>11.2}x",
            figures.name,
            figures.per_second,
            figures.p50_ms,
            figures.p99_ms,
            figures.errors,
            figures.per_second / baseline
        );
    }
}

/// A setting from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `clients` closed-loop clients against `base` for `period`, each sending the requests
/// `make` builds (given a running number); anything but a 2xx counts as an error.
pub async fn load<F>(
    name: &'static str,
    base: &str,
    clients: usize,
    period: Duration,
    make: F,
) -> Figures
where
    F: Fn(&reqwest::Client, &str, usize) -> reqwest::RequestBuilder + Send + Sync + Clone + 'static,
{
    let deadline = Instant::now() + period;
    let workers: Vec<_> = (0..clients)
        .map(|worker| {
            let make = make.clone();
            let base = base.to_owned();
            let client = reqwest::Client::new();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut n = worker * 7919;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    match make(&client, &base, n).send().await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            latencies.push(started.elapsed());
                        }
                        _ => errors += 1,
                    }
                    n += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mut some, failed) = worker.await.expect("a load worker");
        latencies.append(&mut some);
        errors += failed;
    }
    Figures::from_latencies(name, latencies, errors, period)
}
