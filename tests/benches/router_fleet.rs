//! The router over a fleet: `TENANCY_BENCH_TENANTS` tenants (default 10,000) over
//! `TENANCY_BENCH_SERVERS` database servers (default 4), each with a connection budget of
//! `TENANCY_BENCH_BUDGET` (default 150). Every tenant is created through the API (the
//! control plane places them, most room first) with one customer.
//!
//! Through the router (`wrk`, 32 clients): one tenant (the reference), then every tenant
//! uniformly (against a new connection per read as each tenant's role, over every tenant
//! in turn: the servers' own rate of opens to databases as cold as the router meets) and
//! by Zipf's law (exponent 1.0), each the median of `TENANCY_BENCH_ROUNDS` runs (default 3)
//! of `TENANCY_BENCH_SECONDS` (default 10). Printed beside them: the most router
//! connections seen on each server (`pg_stat_activity`, sampled every 50 ms from before
//! the first request to after the last) against its budget, the 503s (deliberate
//! overload: a request that waited its bounded time for a connection) apart from other
//! errors, and the router's resident memory.
//!
//! Run: `cargo bench -p tenancy-tests --bench router_fleet` (needs `wrk`). A tenant
//! database is about 9 MiB of PostgreSQL's own catalog: 10,000 need about 90 GB where the
//! clusters live (`TENANCY_TEST_TMPDIR`, else `/dev/shm`); the README says how to give them
//! a compressed filesystem.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tenancy_tests::bench::load::{
    CONNECTIONS, Error, connect_each, env_or, median, print_table, resident_mib, tenant_roles,
    through_router, write_script,
};
use tenancy_tests::{ControlPlane, TenantRouter, TestPostgres, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let tenant_count: usize = env_or("TENANCY_BENCH_TENANTS", 10_000);
    let server_count: usize = env_or("TENANCY_BENCH_SERVERS", 4);
    let budget: i64 = env_or("TENANCY_BENCH_BUDGET", 150);
    let seconds: u64 = env_or("TENANCY_BENCH_SECONDS", 10);
    let rounds: usize = env_or("TENANCY_BENCH_ROUNDS", 3);
    assert!(
        std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok(),
        "wrk is needed: apt-get install wrk"
    );

    let app = ControlPlane::start_on(
        TestPostgres::start_with(100, &[]),
        &[
            ("TENANCY_WARM_POOL_SIZE", "8"),
            ("TENANCY_JOBS_INTERVAL", "10s"),
            ("TENANCY_STORAGE_SAMPLE_INTERVAL", "5m"),
        ],
    )
    .await;
    let admin = app.admin_token().await;
    tenancy_tests::bench::lift_rate_limit(&app, &admin).await;
    // Room for the routers' budget, the control plane and the warm pool's work.
    let max_connections = u32::try_from(budget)? + 50;
    let per_server = i64::try_from(tenant_count.div_ceil(server_count))? + 10;
    let mut servers = HashMap::new();
    for index in 1..=server_count {
        // Autovacuum as the README advises for many databases; a smaller WAL (every
        // tenant database is written to it once as it is created).
        let postgres = TestPostgres::start_distinct_with(
            max_connections,
            &[("autovacuum_naptime", "10min"), ("max_wal_size", "256MB")],
        );
        let name = format!("db{index}");
        let (status, body) = app
            .call(
                reqwest::Method::POST,
                "/v1/servers",
                Some(&admin),
                Some(json!({
                    "name": name, "host": postgres.server.host(), "port": postgres.server.port(),
                    "admin_user": "postgres", "admin_password": postgres.server.superuser_password(),
                    "max_tenants": per_server, "connection_budget": budget })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        servers.insert(name, postgres);
    }
    let router = app
        .start_router(&[
            ("TENANCY_POOL_WAIT", "5s"),
            ("TENANCY_SERVER_OPENS_PER_SECOND", "1000"),
        ])
        .await;
    let resident_start = resident_mib(router.process.child.id()).unwrap_or(0);

    let started = Instant::now();
    let created = futures::stream::iter(0..tenant_count)
        .map(|index| {
            let (app, admin, servers) = (&app, &admin, &servers);
            async move {
                let slug = format!("fleet-{index:05}");
                let (status, created) = app.create_tenant(admin, &slug).await;
                assert_eq!(status, 201, "{created}");
                let server = &servers[created["server"].as_str().ok_or("server")?];
                let database = created["database_name"].as_str().ok_or("database")?;
                let mut connection =
                    tenancy_tests::connect(&server.server.superuser_url(database)).await;
                let id: uuid::Uuid = sqlx::query_scalar(
                    "INSERT INTO app.customers (code, name, email) \
                     VALUES ('C-1', 'Customer 1', 'c1@example.com') RETURNING id",
                )
                .fetch_one(&mut connection)
                .await?;
                if (index + 1) % 1000 == 0 {
                    eprintln!(
                        "{} tenants in {:.0} s",
                        index + 1,
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok::<_, Error>((
                    (
                        app.tenant_token(admin, &slug, &["customers.read"]).await,
                        vec![id.to_string()],
                    ),
                    created,
                ))
            }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
    let (tenants, records): (Vec<_>, Vec<_>) = created
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let created_in = started.elapsed();

    // The reference for many tenants: a new connection per read as the tenants' own roles,
    // over every tenant in turn. (Over a sample, its databases' files stay in the page cache
    // while the router's uniform run meets all of them cold: with 10,000 databases on a
    // compressed file system that made the reference twice as fast as it should be.)
    let mut targets = Vec::new();
    let roles = tenant_roles(&app, &records.iter().collect::<Vec<_>>()).await?;
    for (record, (role, password)) in records.iter().zip(roles) {
        let server = &servers[record["server"].as_str().ok_or("server")?].server;
        let mut config = tokio_postgres::Config::new();
        config
            .host(server.host())
            .port(server.port())
            .user(&role)
            .password(&password)
            .dbname(record["database_name"].as_str().ok_or("database")?);
        targets.push(config);
    }
    let targets = Arc::new(targets);

    // The most router connections each server has seen, sampled all along the runs.
    let mut names: Vec<&String> = servers.keys().collect();
    names.sort();
    let peaks: Arc<Vec<AtomicI64>> = Arc::new(names.iter().map(|_| AtomicI64::new(0)).collect());
    let mut samplers = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let url = servers[*name].server.superuser_url("postgres");
        let peaks = peaks.clone();
        samplers.push(tokio::spawn(async move {
            let mut connection = tenancy_tests::connect(&url).await;
            loop {
                let now: Result<i64, _> = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenancy-router'",
                )
                .fetch_one(&mut connection)
                .await;
                let Ok(now) = now else {
                    // A peak that stopped being sampled must not pass for one kept.
                    peaks[index].store(-1, Ordering::Relaxed);
                    return;
                };
                peaks[index].fetch_max(now, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    let unavailable_before = responses_with_status(&router, 503).await;
    let errors_before = error_responses(&router).await;
    let mut rows = Vec::new();
    let one = write_script("tenancy-fleet-one.lua", &tenants[..1], None)?;
    rows.push(
        median(rounds, || {
            through_router(&router, "router, 1 tenant", &one, seconds, 0)
        })
        .await?,
    );
    let each = rows.len();
    let name = format!("a connection per read, {} tenants", targets.len());
    rows.push(median(rounds, || connect_each(&name, targets.clone(), seconds)).await?);
    let uniform = write_script("tenancy-fleet-uniform.lua", &tenants, None)?;
    let name = format!("router, {tenant_count} over {server_count} servers, uniform");
    rows.push(
        median(rounds, || {
            through_router(&router, &name, &uniform, seconds, each)
        })
        .await?,
    );
    let zipf = write_script("tenancy-fleet-zipf.lua", &tenants, Some(1.0))?;
    let name = format!("router, {tenant_count} over {server_count} servers, Zipf(1.0)");
    rows.push(median(rounds, || through_router(&router, &name, &zipf, seconds, 0)).await?);
    for sampler in samplers {
        sampler.abort();
    }
    let unavailable = responses_with_status(&router, 503).await - unavailable_before;
    let other_errors = error_responses(&router).await - errors_before - unavailable;

    println!(
        "\ncustomer point read, {CONNECTIONS} concurrent clients, the median of {rounds} runs of {seconds} s each; {tenant_count} tenants over {server_count} servers, budget {budget} each"
    );
    print_table(&rows);
    println!(
        "({tenant_count} tenants created through the API, 8 at a time, in {:.1} s)",
        created_in.as_secs_f64()
    );
    for (name, peak) in names.iter().zip(peaks.iter()) {
        match peak.load(Ordering::Relaxed) {
            -1 => println!("server {name}: sampling its connections failed; no peak to show"),
            peak => {
                println!("server {name}: at most {peak} router connections seen (budget {budget})")
            }
        }
    }
    println!(
        "over every run: {unavailable} answers 503 (a bounded wait for a connection ran out), {other_errors} other 4xx/5xx"
    );
    println!(
        "router resident memory: {resident_start} MiB at start, {} MiB after {tenant_count} tenants",
        resident_mib(router.process.child.id()).unwrap_or(0)
    );
    let metrics = router.metrics().await;
    for line in metrics.lines().filter(|line| {
        line.starts_with("tenancy_router_directory_")
            || line.starts_with("tenancy_router_server_connections_opened")
            || line.starts_with("tenancy_router_server_evictions")
    }) {
        println!("{line}");
    }
    Ok(())
}

/// Answers the router has given with `status`, over every route.
async fn responses_with_status(router: &TenantRouter, status: u16) -> u64 {
    let label = format!("status=\"{status}\"");
    router
        .metric_sum(|line| requests(line) && line.contains(&label))
        .await as u64
}

/// Answers the router has given with a 4xx or 5xx status, over every route.
async fn error_responses(router: &TenantRouter) -> u64 {
    router
        .metric_sum(|line| {
            requests(line) && (line.contains("status=\"4") || line.contains("status=\"5"))
        })
        .await as u64
}

fn requests(line: &str) -> bool {
    line.starts_with("tenancy_router_http_requests_total{")
}
