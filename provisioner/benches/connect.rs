//! What a new connection to a tenant database costs, with the tenant role's SCRAM verifier
//! at PostgreSQL's 4,096 iterations (the baseline) and at the platform's
//! [`provisioner::scram::MACHINE_ITERATIONS`] for machine-generated passwords: sequential
//! connects (each a fork on the server, a SCRAM exchange, a first query), same password,
//! same database, one run. The client's CPU per connection is what the router pays (its
//! PBKDF2 runs there); the wall time includes the server's fork and backend start.
//!
//! Run: `cargo bench -p provisioner --bench connect` (`TENANCY_BENCH_CONNECTS=N`, default
//! 500 per verifier).

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
    let postgres = EmbeddedPostgres::start(PostgresOptions::for_tests(dir.path().join("data")))?;
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
    Ok(())
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
