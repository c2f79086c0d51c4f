//! Backup and restore throughput of a tenant database of at least 500 MB, against the
//! PostgreSQL tools alone on the same database in the same run:
//! - `tenantctl backup create` (pg_dump as a reader role, streamed into an S3 multipart
//!   upload on loopback, hashed) against `pg_dump -Fc > /dev/null`;
//! - `tenantctl backup restore` (the object read twice: checked whole, then into
//!   `pg_restore`; grants; catalog switch; 2 s for the routers before the old database is
//!   dropped) against `pg_restore` of the same archive from a local file.
//!
//! Peak memory of `tenantctl` is printed too (GNU time: `apt-get install time`).
//!
//! Run: `cargo bench -p tenancy-tests --bench backup`
//! (`TENANCY_BENCH_MB`, default 500, sets the database size).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tenancy_infra::{EmbeddedS3, S3Credentials};
use tenancy_tests::{ControlPlane, binary, connect};

type Error = Box<dyn std::error::Error>;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> Result<(), Error> {
    let target_mb: i64 = std::env::var("TENANCY_BENCH_MB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(500);
    let credentials = S3Credentials {
        access_key: "bench-access".to_owned(),
        secret_key: "bench-secret-0123456789".to_owned(),
    };
    let s3_dir = tenancy_tests::temp_dir();
    let s3 = EmbeddedS3::start(s3_dir.path().join("store"), 0, credentials.clone()).await?;
    s3.ensure_bucket("backups").await?;
    let app = ControlPlane::start_with(&[("TENANCY_SCHEDULED_BACKUPS", "false")]).await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 10)
        .await;
    let (status, tenant) = app.create_tenant(&admin, "bench").await;
    assert_eq!(status, 201, "{tenant}");
    let database = tenant["database_name"]
        .as_str()
        .ok_or("database")?
        .to_owned();

    let started = Instant::now();
    let mut connection = connect(&app.postgres.url(&database)).await;
    // Rows of ~1 KB of hex text (compresses about 2:1, like real data).
    let rows = target_mb * 1024;
    let mut done = 0;
    while done < rows {
        let batch = (rows - done).min(50_000);
        sqlx::query(
            "INSERT INTO app.customers (code, name, email, address) \
             SELECT 'C-' || g, 'Customer ' || g, 'c' || g || '@example.com', \
                    (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 30) i) \
             FROM generate_series($1::bigint, $2::bigint) g",
        )
        .bind(done + 1)
        .bind(done + batch)
        .execute(&mut connection)
        .await?;
        done += batch;
    }
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut connection)
        .await?;
    drop(connection);
    let size_mb = size as f64 / 1_048_576.0;
    println!(
        "database of {size_mb:.0} MB made in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let bin = tenancy_infra::PgBinaries::locate()?;
    let server = &app.postgres.server;
    let pg_env = |command: &mut Command| {
        command
            .env("PGPASSWORD", server.superuser_password())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", server.port().to_string())
            .env("PGUSER", tenancy_infra::postgres::SUPERUSER);
    };

    // Baseline: pg_dump to /dev/null.
    let started = Instant::now();
    let mut command = Command::new(bin.path("pg_dump"));
    pg_env(&mut command);
    let status = command
        .args(["--format=custom", "--dbname", &database])
        .stdout(Stdio::null())
        .status()?;
    assert!(status.success());
    let pg_dump = started.elapsed();

    let s3_args = [
        "--s3-bucket".to_owned(),
        "backups".to_owned(),
        "--s3-endpoint".to_owned(),
        s3.endpoint(),
        "--s3-path-style".to_owned(),
        "--s3-access-key-id".to_owned(),
        credentials.access_key.clone(),
        "--s3-secret-access-key".to_owned(),
        credentials.secret_key.clone(),
    ];
    let (backup, backup_time, backup_rss) =
        tenantctl(&app, &["create", "--tenant", "bench"], &s3_args)?;
    let backup_bytes = backup[0]["bytes"].as_i64().ok_or("bytes")?;
    let id = backup[0]["id"].as_str().ok_or("id")?.to_owned();
    assert!(s3.pending_multipart_uploads()?.is_empty());

    // Baseline: pg_restore of the same archive from a local file, into a fresh database.
    let archive = s3_dir.path().join("local.dump");
    let mut command = Command::new(bin.path("pg_dump"));
    pg_env(&mut command);
    let status = command
        .args(["--format=custom", "--dbname", &database, "--file"])
        .arg(&archive)
        .status()?;
    assert!(status.success());
    let mut admin = connect(&app.postgres.url("postgres")).await;
    sqlx::query("CREATE DATABASE bench_restore_baseline")
        .execute(&mut admin)
        .await?;
    let started = Instant::now();
    let mut command = Command::new(bin.path("pg_restore"));
    pg_env(&mut command);
    let status = command
        .args([
            "--dbname",
            "bench_restore_baseline",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
        ])
        .arg(&archive)
        .status()?;
    assert!(status.success());
    let pg_restore = started.elapsed();
    sqlx::query("DROP DATABASE bench_restore_baseline")
        .execute(&mut admin)
        .await?;

    let (_, restore_time, restore_rss) = tenantctl(&app, &["restore", &id], &s3_args)?;

    let mb = backup_bytes as f64 / 1_048_576.0;
    let rate = |time: Duration| mb / time.as_secs_f64();
    println!();
    println!(
        "backup and restore of a {size_mb:.0} MB tenant database (archive {mb:.0} MB), S3 on loopback"
    );
    println!("| way | wall s | archive MB/s | vs baseline | peak RSS MB |");
    println!("|---|---|---|---|---|");
    println!(
        "| pg_dump -Fc > /dev/null (baseline) | {:.1} | {:.1} | 1.00x | |",
        pg_dump.as_secs_f64(),
        rate(pg_dump)
    );
    println!(
        "| tenantctl backup create | {:.1} | {:.1} | {:.2}x the time | {:.0} |",
        backup_time.as_secs_f64(),
        rate(backup_time),
        backup_time.as_secs_f64() / pg_dump.as_secs_f64(),
        backup_rss
    );
    println!(
        "| pg_restore from a local file (baseline) | {:.1} | {:.1} | 1.00x | |",
        pg_restore.as_secs_f64(),
        rate(pg_restore)
    );
    println!(
        "| tenantctl backup restore | {:.1} | {:.1} | {:.2}x the time | {:.0} |",
        restore_time.as_secs_f64(),
        rate(restore_time),
        restore_time.as_secs_f64() / pg_restore.as_secs_f64(),
        restore_rss
    );
    s3.stop().await;
    Ok(())
}

/// `tenantctl --json backup <args>` under GNU time: its JSON, wall time and peak RSS (MB).
fn tenantctl(
    app: &ControlPlane,
    args: &[&str],
    s3_args: &[String],
) -> Result<(Value, Duration, f64), Error> {
    let rss_file = tempfile::NamedTempFile::new()?;
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss_file.path())
        .arg(binary("tenantctl"))
        .args(["--json", "backup"])
        .args(args)
        .args(s3_args)
        .env("TENANCY_DATABASE_URL", &app.database_url)
        .env("TENANCY_CATALOG_KEY", app.catalog_key())
        .env("RUST_LOG", "warn")
        .output()?;
    let wall = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "tenantctl backup {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let rss_kb: f64 = std::fs::read_to_string(rss_file.path())?
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0.0);
    Ok((
        serde_json::from_slice(&output.stdout)?,
        wall,
        rss_kb / 1024.0,
    ))
}
