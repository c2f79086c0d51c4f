//! Router throughput and latency for a customer point read, against two baselines measured
//! in the same run on the same server:
//! - through the router over HTTP (`wrk` on loopback, random customer per request);
//! - the same query on a deadpool-postgres pool in-process, as the tenant's role;
//! - `pgbench` with that query (by a numeric key joined to the id) on the same database;
//!
//! - `pgbench -C`, a new connection per query (what a router that kept none would pay);
//!
//! and through the router again with 1,000 tenants, a random tenant per request, uniformly
//! and by Zipf's law (exponent 1.0: a few tenants busy, most rarely seen), each with the
//! connections the router opened during the run.
//!
//! Run: `cargo bench -p tenancy-tests --bench router` (needs `wrk`; `apt-get install wrk`).
//! `TENANCY_BENCH_TENANTS` (default 1000) and `TENANCY_BENCH_SECONDS` (default 10) adjust it.

use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::Value;
use tenancy_tests::{ControlPlane, json};

type Error = Box<dyn std::error::Error>;

const CONNECTIONS: usize = 32;
const CUSTOMERS: usize = 1000;

struct Figures {
    name: String,
    per_second: f64,
    mean_ms: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Connections the router opened during the run.
    opened: Option<u64>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let seconds: u64 = env_or("TENANCY_BENCH_SECONDS", 10);
    let tenant_count: usize = env_or("TENANCY_BENCH_TENANTS", 1000);
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is needed: apt-get install wrk"
    );

    let app = ControlPlane::start_with(&[("TENANCY_WARM_POOL_SIZE", "8")]).await;
    let admin = app.admin_token().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/servers",
            Some(&admin),
            Some(json!({
            "name": "main", "host": "127.0.0.1", "port": app.postgres.server.port(),
            "admin_user": "postgres", "admin_password": app.postgres.server.superuser_password(),
            "max_tenants": 5000, "connection_budget": 150 })),
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
    let router = app.start_router(&[("TENANCY_POOL_WAIT", "5s")]).await;
    let mut results = Vec::new();

    // The same query in-process on a pool, as the tenant's role (first: the role's
    // connection limit is the plan's, and the router's pool will hold its share).
    results.push(in_process(&app, &tenant, &ids, seconds).await?);

    // pgbench, same server and database, as the superuser; and with a new connection for
    // every query (the floor a router without warm connections would sit on).
    results.push(pgbench(&app, &database, seconds, false)?);
    results.push(pgbench(&app, &database, seconds, true)?);

    // Through the router, one tenant.
    let script = std::env::temp_dir().join("tenancy-bench-one.lua");
    std::fs::write(&script, lua_script(&[(token.clone(), ids.clone())], None))?;
    results.push(through_router(&router, "router over HTTP, 1 tenant", &script, seconds).await?);

    // Through the router, many tenants, a random one per request.
    let mut tenants = vec![(token, ids)];
    let started = Instant::now();
    for index in 1..tenant_count {
        let slug = format!("bench-{index:05}");
        let (status, created) = app.create_tenant(&admin, &slug).await;
        assert_eq!(status, 201, "{created}");
        let database = created["database_name"]
            .as_str()
            .ok_or("database")?
            .to_owned();
        let ids = seed_customers(&app, &database, 10).await?;
        tenants.push((
            app.tenant_token(&admin, &slug, &["customers.read"]).await,
            ids,
        ));
    }
    let created_in = started.elapsed();
    let script = std::env::temp_dir().join("tenancy-bench-many.lua");
    std::fs::write(&script, lua_script(&tenants, None))?;
    results.push(
        through_router(
            &router,
            &format!("router, {tenant_count} tenants uniform"),
            &script,
            seconds,
        )
        .await?,
    );
    let script = std::env::temp_dir().join("tenancy-bench-zipf.lua");
    std::fs::write(&script, lua_script(&tenants, Some(1.0)))?;
    results.push(
        through_router(
            &router,
            &format!("router, {tenant_count} tenants Zipf(1.0)"),
            &script,
            seconds,
        )
        .await?,
    );

    let baseline = results[0].per_second;
    println!(
        "\ncustomer point read, {CONNECTIONS} concurrent clients, {seconds} s each, 2 cores shared by client, router and PostgreSQL"
    );
    println!(
        "{:<40} {:>9} {:>8} {:>8} {:>8} {:>10} {:>14}",
        "path", "req/s", "mean ms", "p50 ms", "p99 ms", "opens", "vs in-process"
    );
    let cell =
        |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |value| format!("{value:.2}"));
    for figures in &results {
        println!(
            "{:<40} {:>9.0} {:>8.2} {:>8} {:>8} {:>10} {:>13.2}x",
            figures.name,
            figures.per_second,
            figures.mean_ms,
            cell(figures.p50_ms),
            cell(figures.p99_ms),
            figures
                .opened
                .map_or_else(|| "-".to_owned(), |opened| opened.to_string()),
            figures.per_second / baseline
        );
    }
    println!(
        "({} more tenants created through the API in {:.1} s)",
        tenant_count - 1,
        created_in.as_secs_f64()
    );
    let metrics = router
        .client
        .get(format!("{}/metrics", router.base_url))
        .send()
        .await?
        .text()
        .await?;
    for line in metrics
        .lines()
        .filter(|line| line.starts_with("tenancy_router_directory_lookups_total"))
    {
        println!("{line}");
    }
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
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

/// A wrk script that sends each request as a random (tenant token, customer id) pair: the
/// tenant uniformly, or by Zipf's law with exponent `zipf` (the first tenant the busiest).
fn lua_script(tenants: &[(String, Vec<String>)], zipf: Option<f64>) -> String {
    let mut script = String::from("local cdf = {");
    if let Some(exponent) = zipf {
        let weights: Vec<f64> = (1..=tenants.len())
            .map(|rank| 1.0 / (rank as f64).powf(exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        for weight in weights {
            running += weight / total;
            let _ = write!(script, "{running:.9},");
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
        "}\nmath.randomseed(os.time())\n\
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

/// A wrk run through the router, with the connections the router opened meanwhile.
async fn through_router(
    router: &tenancy_tests::TenantRouter,
    name: &str,
    script: &std::path::Path,
    seconds: u64,
) -> Result<Figures, Error> {
    let before = opened(router).await?;
    let mut figures = wrk(name, &router.base_url, script, seconds)?;
    figures.opened = Some(opened(router).await?.saturating_sub(before));
    Ok(figures)
}

/// Connections the router has opened so far, over every server.
async fn opened(router: &tenancy_tests::TenantRouter) -> Result<u64, Error> {
    let metrics = router
        .client
        .get(format!("{}/metrics", router.base_url))
        .send()
        .await?
        .text()
        .await?;
    Ok(metrics
        .lines()
        .filter(|line| line.starts_with("tenancy_router_server_connections_opened_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

fn wrk(
    name: &str,
    base_url: &str,
    script: &std::path::Path,
    seconds: u64,
) -> Result<Figures, Error> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
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
    let non_2xx = value_after("non2xx").unwrap_or_default();
    assert_eq!(non_2xx, "0", "every request must succeed: {text}");
    Ok(Figures {
        name: name.to_owned(),
        per_second,
        mean_ms: wrk_ms(&value_after("Latency").ok_or("mean")?)?,
        p50_ms: Some(wrk_ms(&value_after("50%").ok_or("p50")?)?),
        p99_ms: Some(wrk_ms(&value_after("99%").ok_or("p99")?)?),
        opened: None,
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

async fn in_process(
    app: &ControlPlane,
    tenant: &Value,
    ids: &[String],
    seconds: u64,
) -> Result<Figures, Error> {
    let id: uuid::Uuid = tenant["id"].as_str().ok_or("id")?.parse()?;
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT app_password FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_one(&mut catalog)
        .await?;
    let password = app
        .sealer
        .open_secret(&format!("tenant:{id}:app_password"), &sealed)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(app.postgres.server.port())
        .user(format!("t_{}_app", id.simple()))
        .password(password.expose_secret())
        .dbname(tenant["database_name"].as_str().ok_or("database")?);
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
                    .prepare_cached("SELECT id, code, name, email, phone, address, tax_id, created_at, updated_at FROM customers WHERE id = $1")
                    .await
                    .map_err(|error| error.to_string())?;
                client.query_opt(&statement, &[&ids[index]]).await.map_err(|error| error.to_string())?;
                latencies.push(started.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    latencies.sort();
    let at = |percent: usize| {
        latencies[(latencies.len() * percent / 100).min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    let mean = latencies.iter().sum::<Duration>().as_secs_f64() * 1000.0 / latencies.len() as f64;
    Ok(Figures {
        name: "in-process pool (same query)".to_owned(),
        per_second: latencies.len() as f64 / seconds as f64,
        mean_ms: mean,
        p50_ms: Some(at(50)),
        p99_ms: Some(at(99)),
        opened: None,
    })
}

/// pgbench with the same query; `connect_each`: a new connection per transaction (`-C`),
/// what a router that kept no connection would pay.
fn pgbench(
    app: &ControlPlane,
    database: &str,
    seconds: u64,
    connect_each: bool,
) -> Result<Figures, Error> {
    let script = std::env::temp_dir().join("tenancy-bench-pgbench.sql");
    std::fs::write(
        &script,
        format!(
            "\\set n random(1, {CUSTOMERS})\n\
             SELECT c.id, c.code, c.name, c.email, c.phone, c.address, c.tax_id, c.created_at, c.updated_at \
             FROM app.customers c JOIN public.bench_ids b ON b.id = c.id WHERE b.n = :n;\n"
        ),
    )?;
    let binaries = tenancy_infra::PgBinaries::locate()?;
    let output = Command::new(binaries.path("pgbench"))
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &app.postgres.server.port().to_string(),
            "-U",
            "postgres",
        ])
        .args([
            "-c",
            &CONNECTIONS.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-M",
            "prepared",
        ])
        .args(connect_each.then_some("-C"))
        .arg("-f")
        .arg(&script)
        .arg(database)
        .env("PGPASSWORD", app.postgres.server.superuser_password())
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
    Ok(Figures {
        name: if connect_each {
            "pgbench -C (a connection per query)".to_owned()
        } else {
            "pgbench (same query, by key)".to_owned()
        },
        per_second,
        mean_ms: number_after("latency average").ok_or("latency")?,
        p50_ms: None,
        p99_ms: None,
        opened: None,
    })
}
