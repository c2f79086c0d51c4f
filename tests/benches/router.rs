//! Router throughput and latency for a customer point read, against references measured
//! in the same run on the same server:
//! - the same query on a deadpool-postgres pool in-process, as the tenant's role;
//! - `pgbench` with that query (by a numeric key joined to the id) on the same database;
//! - `pgbench -C`, a new connection per query (what a router that kept none would pay), as
//!   the superuser and as the tenant's role (16 SCRAM rounds: the server's own rate of
//!   connection opens, which bounds any router once its tenants outnumber its budget);
//!
//! and through the router (`wrk` on loopback, a random customer per request): one tenant;
//! 1,000 tenants, a random one per request, uniformly and by Zipf's law (exponent 1.0: a
//! few tenants busy, most rarely seen) with a connection budget of 150; and Zipf again with
//! the budget sized to the server (changed live through the API). Each row has its errors,
//! the connections the router opened, and its ratio to its reference row. The run goes in
//! `TENANCY_BENCH_ROUNDS` rounds (default 3), each running every row of its phase once, so
//! a slow minute of the shared host lands on a row and its reference alike: a row is its
//! median round (with the range of the rounds), and a ratio is the median of the rounds'
//! ratios (with their range; the Zipf rows' pair round n of the two phases). Beside the
//! sized Zipf row, the same traffic in-process with a connection per tenant: what the
//! server itself does with 1,000 databases' backends busy. `TENANCY_BENCH_HOLD_SECONDS`
//! keeps the platform up after the run (for a profiler), printing the router's address.
//!
//! Run: `cargo bench -p tenancy-tests --bench router` (needs `wrk`; `apt-get install wrk`).
//! `TENANCY_BENCH_TENANTS` (default 1000), `TENANCY_BENCH_SECONDS` (default 10) and
//! `TENANCY_BENCH_OPENS_PER_SECOND` (the router's cap, default 1000) adjust it.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tenancy_tests::bench::load::{
    CONNECTIONS, Error, Rounds, Row, env_or, print_table, ratio, ratio_text, resident_mib,
    tenant_roles, through_router, write_script, wrk, zipf_cdf,
};
use tenancy_tests::{ControlPlane, TenantRouter, eventually, json};

const CUSTOMERS: usize = 1000;
/// The customer point read the in-process references run (the router's, as it prepares it).
const CUSTOMER_READ: &str = "SELECT id, code, name, email, phone, address, tax_id, created_at, updated_at FROM customers WHERE id = $1";
/// The budget the figures are read at, and one sized to the server (a warm
/// connection for every tenant and room for the busiest to have more; `max_connections`
/// leaves room for the control plane and pgbench).
const SMALL_BUDGET: u32 = 150;
const SIZED_BUDGET: u32 = 1200;
const MAX_CONNECTIONS: u32 = 1250;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let seconds: u64 = env_or("TENANCY_BENCH_SECONDS", 10);
    let tenant_count: usize = env_or("TENANCY_BENCH_TENANTS", 1000);
    let opens: u32 = env_or("TENANCY_BENCH_OPENS_PER_SECOND", 1000);
    let rounds: usize = env_or("TENANCY_BENCH_ROUNDS", 3);
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is needed: apt-get install wrk"
    );

    let app = ControlPlane::start_on(
        // Autovacuum as the README advises for thousands of mostly idle tenant databases:
        // with the default one-minute naptime its launcher starts a worker (a new backend)
        // in one of the 1,000 databases every 60 ms, and after the tenants are created
        // their first analyses land in the middle of the measured runs.
        tenancy_tests::TestPostgres::start_with(
            MAX_CONNECTIONS,
            &[("autovacuum_naptime", "10min")],
        ),
        // The jobs on their production schedule (the harness runs them every 300 ms, and
        // sampling 1,000 databases' sizes that often takes most of a core).
        &[
            ("TENANCY_WARM_POOL_SIZE", "8"),
            ("TENANCY_JOBS_INTERVAL", "10s"),
            ("TENANCY_STORAGE_SAMPLE_INTERVAL", "5m"),
        ],
    )
    .await;
    let admin = app.admin_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/servers",
            Some(&admin),
            Some(json!({
            "name": "main", "host": "127.0.0.1", "port": app.postgres.server.port(),
            "admin_user": "postgres", "admin_password": app.postgres.server.superuser_password(),
            "max_tenants": 5000, "connection_budget": SMALL_BUDGET })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // The plan's rate limit would turn most of the load into 429s: lift it for the run.
    tenancy_tests::bench::lift_rate_limit(&app, &admin).await;
    let (status, tenant) = app.create_tenant(&admin, "bench-main").await;
    assert_eq!(status, 201, "{tenant}");
    let database = tenant["database_name"]
        .as_str()
        .ok_or("database")?
        .to_owned();
    let ids = seed_customers(&app, &database, CUSTOMERS).await?;
    let token = app
        .tenant_token(&admin, "bench-main", &["customers.read"])
        .await;
    // The opens-per-second cap is set above what this server can do: what is measured is
    // the scheduler against the server's own limit (the cap protects a real server; its
    // default is in the README).
    let opens_text = opens.to_string();
    let router = app
        .start_router(&[
            ("TENANCY_POOL_WAIT", "5s"),
            ("TENANCY_SERVER_OPENS_PER_SECOND", opens_text.as_str()),
        ])
        .await;

    // One tenant: each round runs the same query in-process on a pool as the tenant's role
    // (first: the role's connection limit is the plan's, and the router's pool will hold
    // its share), with pgbench as the superuser, and through the router.
    let (role, password) = tenant_roles(&app, &[&tenant])
        .await?
        .pop()
        .ok_or("the tenant's role")?;
    let script = write_script(
        "tenancy-bench-one.lua",
        &[(token.clone(), ids.clone())],
        None,
    )?;
    let one_name = "router over HTTP, 1 tenant";
    let mut first = Rounds::new(3);
    for round in 0..rounds {
        if round > 0 {
            // The role's connection limit is the plan's (10) and one more: the router
            // gives back what it holds for the in-process pool, then takes it again.
            release_connections(&app, &admin, &router).await;
        }
        first.add(
            0,
            in_process(&app, &tenant, (&role, &password), &ids, seconds).await?,
        );
        first.add(1, pgbench(&app, &database, seconds, None)?);
        set_budget(&app, &admin, SMALL_BUDGET).await;
        first.add(
            2,
            through_router(&router, one_name, &script, seconds, 0).await?,
        );
    }
    let mut results = first.medians();
    let resident_one = resident_mib(router.process.child.id()).unwrap_or(0);

    // Through the router, many tenants, a random one per request.
    let started = Instant::now();
    let created = futures::stream::iter(1..tenant_count)
        .map(|index| {
            let (app, admin) = (&app, &admin);
            async move {
                let slug = format!("bench-{index:05}");
                let (status, created) = app.create_tenant(admin, &slug).await;
                assert_eq!(status, 201, "{created}");
                let database = created["database_name"]
                    .as_str()
                    .ok_or("database")?
                    .to_owned();
                let ids = seed_customers(app, &database, 10).await?;
                Ok::<_, Error>((
                    (
                        app.tenant_token(admin, &slug, &["customers.read"]).await,
                        ids,
                    ),
                    created,
                ))
            }
        })
        .buffered(4)
        .collect::<Vec<_>>()
        .await;
    let mut tenants = vec![(token, ids)];
    let mut databases = vec![tenant.clone()];
    for tenant in created {
        let (pair, created) = tenant?;
        tenants.push(pair);
        databases.push(created);
    }
    let created_in = started.elapsed();
    let uniform = write_script("tenancy-bench-many.lua", &tenants, None)?;
    let zipf = write_script("tenancy-bench-zipf.lua", &tenants, Some(1.0))?;

    // With the server holding every tenant's database (its background work included), each
    // round runs: a new connection per query (the floor a router without warm connections
    // would sit on) as the superuser and as the tenant's role (16 SCRAM rounds), which says
    // how many connections a second this server opens; the router with one tenant again
    // (a tenant's burst on a server full of others' connections); 1,000 tenants uniform and
    // Zipf on the small budget; then the budget sized to the server (changed live), the
    // tenants warmed by a uniform run (not counted), Zipf again, and the budget back.
    let base = results.len();
    // The Zipf rows against the first phase's router row: after the many-tenant rows, a
    // 1-tenant run on the full server keeps to the few connections it has while the other
    // tenants' recent requests still count (as the scheduler intends), a moving reference.
    let (connect_each, one) = (base, 2);
    let uniform_name = format!("router, {tenant_count} uniform, budget {SMALL_BUDGET}");
    let zipf_name = format!("router, {tenant_count} Zipf(1.0), budget {SMALL_BUDGET}");
    let sized_name = format!("router, {tenant_count} Zipf(1.0), budget {SIZED_BUDGET}");
    // The same Zipf traffic in-process, a connection per tenant (as its role): what the
    // server itself does with 1,000 databases' backends busy, with no router between.
    let roles = tenant_roles(&app, &databases.iter().collect::<Vec<_>>()).await?;
    let direct: Vec<tokio_postgres::Config> = databases
        .iter()
        .zip(&roles)
        .map(|(tenant, (role, password))| as_tenant(&app, tenant, role, password))
        .collect();
    let direct_ids: Arc<Vec<Vec<uuid::Uuid>>> = Arc::new(
        tenants
            .iter()
            .map(|(_, ids)| ids.iter().filter_map(|id| id.parse().ok()).collect())
            .collect(),
    );
    let direct_name = format!("in-process, {tenant_count} Zipf(1.0), a connection each");
    let mut many = Rounds::new(7);
    for _ in 0..rounds {
        many.add(
            0,
            pgbench(&app, &database, seconds, Some(("postgres", None)))?,
        );
        release_connections(&app, &admin, &router).await;
        many.add(
            1,
            pgbench(&app, &database, seconds, Some((&role, Some(&password))))?,
        );
        set_budget(&app, &admin, SMALL_BUDGET).await;
        let mut again = through_router(&router, one_name, &script, seconds, 0).await?;
        again.name = format!("{one_name}, {tenant_count} on the server");
        many.add(2, again);
        many.add(
            3,
            through_router(&router, &uniform_name, &uniform, seconds, connect_each).await?,
        );
        many.add(
            4,
            through_router(&router, &zipf_name, &zipf, seconds, one).await?,
        );
        // The router gives back its connections for the in-process run's 1,000.
        release_connections(&app, &admin, &router).await;
        many.add(
            6,
            in_process_zipf(&direct_name, &direct, &direct_ids, seconds).await?,
        );
        set_budget(&app, &admin, SIZED_BUDGET).await;
        wrk("warm-up", &router.base_url, &uniform, seconds.max(10))?;
        many.add(
            5,
            through_router(&router, &sized_name, &zipf, seconds, one).await?,
        );
        set_budget(&app, &admin, SMALL_BUDGET).await;
    }
    results.extend(many.medians());
    let (sized, direct_row) = (base + 5, base + 6);
    let against_direct = ratio_text(&results[sized], &results[direct_row]);
    let direct_one = ratio(&results[direct_row], &results[0]).0;
    let router_one = ratio(&results[sized], &results[one]).0;

    println!(
        "\ncustomer point read, {CONNECTIONS} concurrent clients, {rounds} rounds of {seconds} s runs (each row its median round; each ratio the median of the rounds' ratios), 2 cores shared by client, router and PostgreSQL (max_connections {MAX_CONNECTIONS}; router opens at most {opens}/s per server)"
    );
    print_table(&results);
    println!(
        "the sized Zipf row is {against_direct} the same traffic in-process; in-process, {tenant_count} tenants' Zipf is {direct_one:.3}x one tenant's, through the router {router_one:.3}x"
    );
    println!(
        "({} more tenants created through the API, 4 at a time, in {:.1} s)",
        tenant_count - 1,
        created_in.as_secs_f64()
    );
    let metrics = router.metrics().await;
    for line in metrics.lines().filter(|line| {
        line.starts_with("tenancy_router_directory_lookups_total")
            || line.starts_with("tenancy_router_server_")
    }) {
        println!("{line}");
    }
    println!(
        "router resident memory: {resident_one} MiB after 1 tenant, {} MiB after {tenant_count}",
        resident_mib(router.process.child.id()).unwrap_or(0)
    );
    // For profiling: keeps the platform up a while (`TENANCY_BENCH_HOLD_SECONDS`).
    let hold: u64 = env_or("TENANCY_BENCH_HOLD_SECONDS", 0);
    if hold > 0 {
        println!(
            "holding {hold} s: router {}, control plane {}, admin token {admin}, scripts {} {}",
            router.base_url,
            app.base_url,
            uniform.display(),
            zipf.display()
        );
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    Ok(())
}

/// Changes the server's connection budget live, and gives the router a second to apply it.
async fn set_budget(app: &ControlPlane, admin: &str, budget: u32) {
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/servers/main",
            Some(admin),
            Some(json!({ "connection_budget": budget })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection to `tenant`'s database as its role.
fn as_tenant(
    app: &ControlPlane,
    tenant: &Value,
    role: &str,
    password: &str,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(app.postgres.server.port())
        .user(role)
        .password(password)
        .dbname(tenant["database_name"].as_str().unwrap_or_default());
    config
}

/// Lowers the budget to one and waits until the router holds at most one connection, so a
/// reference run can open its own.
async fn release_connections(app: &ControlPlane, admin: &str, router: &TenantRouter) {
    set_budget(app, admin, 1).await;
    eventually(
        Duration::from_secs(10),
        "the router down to one connection",
        || async {
            router
                .metric_sum(|line| line.starts_with("tenancy_router_server_connections{"))
                .await
                <= 1.0
        },
    )
    .await;
}

/// Inserts `count` customers directly (as the superuser) and returns their ids; also a
/// `public.bench_ids (n, id)` table for pgbench, which can only draw random integers.
async fn seed_customers(
    app: &ControlPlane,
    database: &str,
    count: usize,
) -> Result<Vec<String>, Error> {
    let mut connection = tenancy_tests::connect(&app.postgres.server.superuser_url(database)).await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO app.customers (code, name, email) \
         SELECT 'C-' || n, 'Customer ' || n, 'c' || n || '@example.com' FROM generate_series(1, $1) AS n RETURNING id",
    )
    .bind(i32::try_from(count)?)
    .fetch_all(&mut connection)
    .await?;
    sqlx::query("CREATE TABLE public.bench_ids (n int PRIMARY KEY, id uuid NOT NULL)")
        .execute(&mut connection)
        .await?;
    sqlx::query("INSERT INTO public.bench_ids SELECT row_number() OVER (), id FROM unnest($1::uuid[]) AS id")
        .bind(&ids)
        .execute(&mut connection)
        .await?;
    sqlx::query("ANALYZE").execute(&mut connection).await?;
    Ok(ids.iter().map(ToString::to_string).collect())
}

async fn in_process(
    app: &ControlPlane,
    tenant: &Value,
    (role, password): (&str, &str),
    ids: &[String],
    seconds: u64,
) -> Result<Row, Error> {
    let config = as_tenant(app, tenant, role, password);
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(10)
        .build()?;
    let ids: Arc<Vec<uuid::Uuid>> = Arc::new(ids.iter().filter_map(|id| id.parse().ok()).collect());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let pool = pool.clone();
        let ids = ids.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut index = worker * 7919;
            while Instant::now() < deadline {
                index = (index * 31 + 17) % ids.len();
                let started = Instant::now();
                let client = pool.get().await.map_err(|error| error.to_string())?;
                let statement = client
                    .prepare_cached(CUSTOMER_READ)
                    .await
                    .map_err(|error| error.to_string())?;
                client
                    .query_opt(&statement, &[&ids[index]])
                    .await
                    .map_err(|error| error.to_string())?;
                latencies.push(started.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    row_of("in-process pool (same query)", workers, seconds).await
}

/// The customer read in-process with a connection per tenant (`tenants`, opened first,
/// not timed) on one of its customers (`ids`, by tenant), from [`CONNECTIONS`] tasks for
/// `seconds`, each request's tenant drawn by Zipf(1.0).
async fn in_process_zipf(
    name: &str,
    tenants: &[tokio_postgres::Config],
    ids: &Arc<Vec<Vec<uuid::Uuid>>>,
    seconds: u64,
) -> Result<Row, Error> {
    let opened = futures::stream::iter(tenants)
        .map(|config| async move {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let statement = client.prepare(CUSTOMER_READ).await?;
            Ok::<_, tokio_postgres::Error>(Arc::new(tokio::sync::Mutex::new((client, statement))))
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
    let clients = Arc::new(opened.into_iter().collect::<Result<Vec<_>, _>>()?);
    let cdf = Arc::new(zipf_cdf(tenants.len(), 1.0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let (clients, ids, cdf) = (clients.clone(), ids.clone(), cdf.clone());
        workers.push(tokio::spawn(async move {
            // xorshift64*, seeded apart per task.
            let mut state =
                0x9E37_79B9_7F4A_7C15_u64 ^ (worker as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let mut next = move || {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                state.wrapping_mul(0x2545_F491_4F6C_DD1D)
            };
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let draw = (next() >> 11) as f64 / (1_u64 << 53) as f64;
                let tenant = cdf
                    .partition_point(|bound| *bound < draw)
                    .min(cdf.len() - 1);
                let customers = &ids[tenant];
                let id = customers[(next() as usize) % customers.len()];
                let started = Instant::now();
                let guard = clients[tenant].lock().await;
                let (client, statement) = &*guard;
                client
                    .query_opt(statement, &[&id])
                    .await
                    .map_err(|error| error.to_string())?;
                drop(guard);
                latencies.push(started.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    row_of(name, workers, seconds).await
}

/// The row of in-process workers' latencies (every request answered) over `seconds`.
async fn row_of(
    name: &str,
    workers: Vec<tokio::task::JoinHandle<Result<Vec<Duration>, String>>>,
    seconds: u64,
) -> Result<Row, Error> {
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    latencies.sort();
    let at = |percent: usize| {
        latencies[(latencies.len() * percent / 100).min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    let mean = latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0 / latencies.len() as f64;
    Ok(Row {
        p50_ms: Some(at(50)),
        p99_ms: Some(at(99)),
        errors: Some(0),
        ..Row::new(name, latencies.len() as f64 / seconds as f64, mean)
    })
}

/// pgbench with the same query. `connect_each`: a new connection per transaction (`-C`),
/// as this user (with this password; else the superuser's): what a router that kept no
/// connection would pay, and how many connections a second the server opens.
fn pgbench(
    app: &ControlPlane,
    database: &str,
    seconds: u64,
    connect_each: Option<(&str, Option<&str>)>,
) -> Result<Row, Error> {
    let script = std::env::temp_dir().join("tenancy-bench-pgbench.sql");
    let query = if matches!(connect_each, Some((_, Some(_)))) {
        // The tenant's role reads its own table only (by its unique code).
        "SELECT c.id, c.code, c.name, c.email, c.phone, c.address, c.tax_id, c.created_at, c.updated_at \
         FROM app.customers c WHERE c.code = 'C-' || :n;"
    } else {
        "SELECT c.id, c.code, c.name, c.email, c.phone, c.address, c.tax_id, c.created_at, c.updated_at \
         FROM app.customers c JOIN public.bench_ids b ON b.id = c.id WHERE b.n = :n;"
    };
    std::fs::write(
        &script,
        format!("\\set n random(1, {CUSTOMERS})\n{query}\n"),
    )?;
    let (user, password) = match connect_each {
        Some((user, Some(password))) => (user.to_owned(), password.to_owned()),
        _ => (
            "postgres".to_owned(),
            app.postgres.server.superuser_password().to_owned(),
        ),
    };
    // As the tenant's role, 8 clients: its connection limit is the plan's 10 and one more
    // (the router gives back its own first), and the router opens 8 at once too.
    let clients = match connect_each {
        Some((_, Some(_))) => 8,
        _ => CONNECTIONS,
    };
    let binaries = tenancy_infra::PgBinaries::locate()?;
    let output = Command::new(binaries.path("pgbench"))
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &app.postgres.server.port().to_string(),
            "-U",
            &user,
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-M",
            "prepared",
        ])
        .args(connect_each.is_some().then_some("-C"))
        .arg("-f")
        .arg(&script)
        .arg(database)
        .env("PGPASSWORD", password)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let number_after = |label: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(label))
            .and_then(|line| line.split('=').nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
    };
    let per_second = number_after("tps").ok_or_else(|| {
        format!(
            "pgbench said: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    // Clients that could not connect are aborted, not counted as failed transactions.
    let aborted = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("aborted"))
        .count() as u64;
    let failed = number_after("number of failed transactions").unwrap_or(0.0) as u64 + aborted;
    let (name, reference) = match connect_each {
        None => ("pgbench (same query, by key)".to_owned(), 0),
        Some((_, None)) => ("pgbench -C (a connection per query)".to_owned(), 0),
        Some((_, Some(_))) => ("pgbench -C, tenant role, 8 clients".to_owned(), 0),
    };
    Ok(Row {
        errors: Some(failed),
        reference,
        ..Row::new(
            name,
            per_second,
            number_after("latency average").ok_or("latency")?,
        )
    })
}
