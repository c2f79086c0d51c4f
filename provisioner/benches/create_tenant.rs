//! Tenant database creation latency on a real PostgreSQL server, four ways, 50+ tenants
//! each, in one run:
//! - plain `CREATE DATABASE` (the baseline: what any tool pays at least);
//! - from scratch: an empty database, then the tenant migrations;
//! - a clone of the server's pre-migrated template (`STRATEGY WAL_LOG`);
//! - a warm database (cloned ahead of time) taken by rename.
//!
//! Every way but the baseline includes the tenant role, the grants and the first admin.
//!
//! Run: `cargo bench -p provisioner --bench create_tenant` (`TENANCY_BENCH_TENANTS=N` for
//! more tenants per way).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use provisioner::{DatabaseName, RoleLimits, ServerAddress};
use secrecy::SecretString;
use tenancy_core::TenantId;
use tenancy_infra::{EmbeddedPostgres, PostgresOptions};

/// The installation the benchmark acts as.
const OWNER: provisioner::Installation = provisioner::Installation(uuid::Uuid::from_u128(
    0x7465_6e61_6e63_7900_0000_0000_0000_0002,
));

const LIMITS: RoleLimits = RoleLimits {
    max_connections: 10,
    statement_timeout_ms: 15_000,
};
const FIRST_ADMIN: Option<(&str, &str)> = Some((
    "owner@bench.example",
    "$argon2id$v=19$m=19456,t=2,p=1$bench$bench",
));

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let tenants: usize = std::env::var("TENANCY_BENCH_TENANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    // Durable settings (fsync on), as a real server runs.
    let postgres = EmbeddedPostgres::start(PostgresOptions {
        durable: true,
        max_connections: 300,
        ..PostgresOptions::for_tests(dir.path().join("data"))
    })?;
    let server = ServerAddress {
        host: postgres.host().to_owned(),
        port: postgres.port(),
        admin_user: "postgres".to_owned(),
        admin_password: SecretString::from(postgres.superuser_password().to_owned()),
    };
    provisioner::template::prepare_server(&server, &tenant_schema::MigrationSet::embedded())
        .await?;
    let admin = server.connect("postgres").await?;

    let mut plain = Vec::new();
    for index in 0..tenants {
        let started = Instant::now();
        admin
            .batch_execute(&format!("CREATE DATABASE bench_plain_{index}"))
            .await?;
        plain.push(started.elapsed());
    }

    let mut scratch = Vec::new();
    for _ in 0..tenants {
        let tenant = TenantId::new();
        let started = Instant::now();
        provisioner::tenant::ensure_role(&admin, tenant, &password(), LIMITS, OWNER).await?;
        let database = DatabaseName::for_tenant(tenant);
        admin
            .batch_execute(&format!("CREATE DATABASE {}", database.ident()))
            .await?;
        provisioner::template::migrate_database(
            &server,
            database.as_str(),
            &tenant_schema::MigrationSet::embedded(),
        )
        .await?;
        provisioner::tenant::ensure_database(&admin, tenant, OWNER).await?;
        provisioner::tenant::configure_database(&server, tenant, FIRST_ADMIN).await?;
        scratch.push(started.elapsed());
    }

    let mut template = Vec::new();
    for _ in 0..tenants {
        let tenant = TenantId::new();
        let started = Instant::now();
        provisioner::tenant::ensure_role(&admin, tenant, &password(), LIMITS, OWNER).await?;
        provisioner::tenant::ensure_database(&admin, tenant, OWNER).await?;
        provisioner::tenant::configure_database(&server, tenant, FIRST_ADMIN).await?;
        template.push(started.elapsed());
    }

    let mut pool = Vec::new();
    for _ in 0..tenants {
        let warm = DatabaseName::warm();
        provisioner::tenant::create_warm_database(&admin, &warm, OWNER).await?;
        pool.push(warm);
    }
    let mut warm = Vec::new();
    for database in &pool {
        let tenant = TenantId::new();
        let started = Instant::now();
        provisioner::tenant::ensure_role(&admin, tenant, &password(), LIMITS, OWNER).await?;
        assert!(provisioner::tenant::adopt_warm_database(&admin, database, tenant).await?);
        provisioner::tenant::configure_database(&server, tenant, FIRST_ADMIN).await?;
        warm.push(started.elapsed());
    }

    let baseline = percentile(&mut plain.clone(), 50.0);
    println!(
        "tenant database creation, {tenants} tenants per way, PostgreSQL {} (fsync on), one connection",
        version(&admin).await?
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>16}",
        "way", "p50 ms", "p95 ms", "mean ms", "p50 / baseline"
    );
    for (name, samples) in [
        ("plain CREATE DATABASE (baseline)", &mut plain),
        ("from scratch (migrations)", &mut scratch),
        ("clone of the template", &mut template),
        ("warm pool (rename)", &mut warm),
    ] {
        let mean = samples.iter().sum::<Duration>() / u32::try_from(samples.len())?;
        let p50 = percentile(samples, 50.0);
        println!(
            "{name:<34} {:>9.1} {:>9.1} {:>9.1} {:>15.2}x",
            ms(p50),
            ms(percentile(samples, 95.0)),
            ms(mean),
            ms(p50) / ms(baseline)
        );
    }
    Ok(())
}

fn password() -> SecretString {
    SecretString::from("bench-role-password".to_owned())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percentile(samples: &mut [Duration], percent: f64) -> Duration {
    samples.sort();
    let rank = ((percent / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.saturating_sub(1).min(samples.len() - 1)]
}

async fn version(client: &provisioner::tokio_postgres::Client) -> Result<String, Error> {
    Ok(client.query_one("SHOW server_version", &[]).await?.get(0))
}
