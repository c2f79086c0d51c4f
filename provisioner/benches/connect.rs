//! What a new connection to a tenant database costs, with the tenant role's SCRAM verifier
//! at PostgreSQL's 4,096 iterations (the baseline) and at the platform's
//! [`provisioner::scram::MACHINE_ITERATIONS`] for machine-generated passwords: sequential
//! connects (each a fork on the server, a SCRAM exchange, a first query), same password,
//! same database, one run. The client's CPU per connection is what the router pays (its
//! PBKDF2 runs there); the wall time includes the server's fork and backend start.
//!
//! Then what an idle connection costs the server in memory: N connections held open, each
//! to its own database cloned from the tenant template and having read a tenant table
//! (as a router's warm connection has), measured as the growth of the proportional set
//! size (PSS, shared pages divided among their users) of all PostgreSQL processes.
//!
//! Run: `cargo bench -p provisioner --bench connect` (`TENANCY_BENCH_CONNECTS=N`, default
//! 500 per verifier; `TENANCY_BENCH_IDLE=N`, default 200 idle connections).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use provisioner::ServerAddress;
use secrecy::SecretString;
use tenancy_infra::{EmbeddedPostgres, PostgresOptions};
use tokio_postgres::NoTls;

type Error = Box<dyn std::error::Error>;

const PASSWORD: &str = "q8V2mZt0LwX4rKc7YbN1pHs5dJf9gA3uE6iO2kTz";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let connects: usize = std::env::var("TENANCY_BENCH_CONNECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let idle: usize = std::env::var("TENANCY_BENCH_IDLE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let postgres = EmbeddedPostgres::start(PostgresOptions {
        max_connections: u32::try_from(idle).unwrap_or(200) + 20,
        ..PostgresOptions::for_tests(dir.path().join("data"))
    })?;
    let server = ServerAddress {
        host: postgres.host().to_owned(),
        port: postgres.port(),
        admin_user: "postgres".to_owned(),
        admin_password: SecretString::from(postgres.superuser_password().to_owned()),
    };
    let admin = server.connect("postgres").await?;
    admin.batch_execute("CREATE DATABASE bench_connect").await?;

    println!(
        "\nnew connections to one database, {connects} each, sequential (loopback, TCP, SCRAM-SHA-256)"
    );
    println!(
        "{:<34}{:>12}{:>10}{:>10}{:>20}{:>14}",
        "verifier", "connects/s", "p50 ms", "p99 ms", "client CPU µs/conn", "vs baseline"
    );
    let mut baseline = None;
    for iterations in [
        provisioner::scram::DEFAULT_ITERATIONS,
        provisioner::scram::MACHINE_ITERATIONS,
    ] {
        let role = format!("bench_role_{iterations}");
        let salt: [u8; 16] = rand::random();
        let verifier = provisioner::scram::verifier_with(PASSWORD, &salt, iterations);
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{verifier}'; \
                 GRANT CONNECT ON DATABASE bench_connect TO {role}"
            ))
            .await?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(postgres.host())
            .port(postgres.port())
            .user(&role)
            .password(PASSWORD)
            .dbname("bench_connect");
        // Warm up: the first connects pay for caches being filled.
        for _ in 0..20 {
            connect_once(&config).await?;
        }
        let mut times = Vec::with_capacity(connects);
        let cpu_before = process_cpu()?;
        let started = Instant::now();
        for _ in 0..connects {
            times.push(connect_once(&config).await?);
        }
        let rate = connects as f64 / started.elapsed().as_secs_f64();
        let cpu = (process_cpu()? - cpu_before).as_secs_f64() * 1e6 / connects as f64;
        times.sort();
        let ratio = rate / *baseline.get_or_insert(rate);
        println!(
            "{:<34}{:>12.0}{:>10.2}{:>10.2}{:>20.0}{:>13.2}x",
            format!("SCRAM-SHA-256, {iterations} iterations"),
            rate,
            millis(times[times.len() / 2]),
            millis(times[times.len() * 99 / 100]),
            cpu,
            ratio
        );
    }
    idle_memory(&postgres, &server, idle).await?;
    Ok(())
}

/// The memory N idle connections cost the server, each on its own tenant-like database.
async fn idle_memory(
    postgres: &EmbeddedPostgres,
    server: &ServerAddress,
    count: usize,
) -> Result<(), Error> {
    provisioner::template::prepare_server(server, &tenant_schema::MigrationSet::embedded()).await?;
    let admin = server.connect("postgres").await?;
    for index in 0..count {
        admin
            .batch_execute(&format!(
                "CREATE DATABASE bench_idle_{index} TEMPLATE {}",
                provisioner::names::TEMPLATE_DATABASE
            ))
            .await?;
    }
    let before = postgres_pss_kib()?;
    let mut held = Vec::with_capacity(count);
    for index in 0..count {
        let mut config = tokio_postgres::Config::new();
        config
            .host(postgres.host())
            .port(postgres.port())
            .user("postgres")
            .password(postgres.superuser_password())
            .dbname(format!("bench_idle_{index}"));
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(connection);
        client
            .simple_query("SELECT count(*) FROM app.customers; SELECT count(*) FROM app.users")
            .await?;
        held.push(client);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = postgres_pss_kib()?;
    let per = (after.saturating_sub(before)) as f64 / count as f64;
    println!(
        "
{count} idle connections, each to its own tenant database after reading two tables: \
         server memory (PSS of every postgres process) {:.0} MiB → {:.0} MiB, {per:.0} KiB per connection",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    drop(held);
    Ok(())
}

/// The proportional set size of every `postgres` process, in KiB (from
/// `/proc/<pid>/smaps_rollup`).
fn postgres_pss_kib() -> Result<u64, Error> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc")? {
        let path = entry?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim() != "postgres" {
            continue;
        }
        let Ok(rollup) = std::fs::read_to_string(path.join("smaps_rollup")) else {
            continue;
        };
        total += rollup
            .lines()
            .find_map(|line| line.strip_prefix("Pss:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
    }
    Ok(total)
}

/// One connection: connect, authenticate, one query, close.
async fn connect_once(config: &tokio_postgres::Config) -> Result<Duration, Error> {
    let started = Instant::now();
    let (client, connection) = config.connect(NoTls).await?;
    let task = tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    drop(client);
    task.await??;
    Ok(started.elapsed())
}

/// This process's CPU time so far (user and system), from `/proc/self/stat` (clock ticks,
/// 100 per second on Linux).
fn process_cpu() -> Result<Duration, Error> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("a stat line")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the command.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
