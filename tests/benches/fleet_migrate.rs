//! Fleet migration wall time: 1,000 tenant databases on one server, one additive step,
//! through `tenantctl migrate run` at concurrency 1, 4 and 8 (a new step each time), and a
//! run with nothing to do (answered from the catalog's ledger).
//!
//! Baseline, measured in the same run on the same databases: a bare loop that connects to
//! each tenant database as the superuser and runs the same kind of ALTER TABLE, one after
//! the other, with no ledger, no marks and no refinery.
//!
//! Run: `cargo bench -p tenancy-tests --bench fleet_migrate`
//! (`TENANCY_BENCH_TENANTS`, default 1000, adjusts the fleet).

use std::time::{Duration, Instant};

use serde_json::Value;
use tenancy_tests::ControlPlane;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let tenant_count: usize = std::env::var("TENANCY_BENCH_TENANTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1000);
    let dir = tenancy_tests::temp_dir();
    tenancy_tests::write_built_in_tenant_steps(dir.path());
    let migrations = dir.path().to_str().ok_or("utf-8 path")?.to_owned();
    let app = ControlPlane::start_with(&[
        ("TENANCY_TENANT_MIGRATIONS", &migrations),
        ("TENANCY_WARM_POOL_SIZE", "8"),
    ])
    .await;
    let admin = app.admin_token().await;
    app.add_server(&admin, "main", &app.postgres.server, 5000)
        .await;

    let started = Instant::now();
    let slugs: Vec<String> = (0..tenant_count).map(|n| format!("fleet-{n:05}")).collect();
    for chunk in slugs.chunks(8) {
        let created =
            futures::future::join_all(chunk.iter().map(|slug| app.create_tenant(&admin, slug)))
                .await;
        for (status, body) in created {
            assert_eq!(status, 201, "{body}");
        }
    }
    println!(
        "created {tenant_count} tenants in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Baseline: the bare loop.
    let mut catalog = tenancy_tests::connect(&app.database_url).await;
    let databases: Vec<String> = sqlx::query_scalar(
        "SELECT database_name FROM tenants WHERE status = 'active' ORDER BY slug",
    )
    .fetch_all(&mut catalog)
    .await?;
    let started = Instant::now();
    for database in &databases {
        let (client, connection) = tokio_postgres::connect(
            &app.postgres.server.superuser_url(database),
            tokio_postgres::NoTls,
        )
        .await?;
        let task = tokio::spawn(connection);
        client
            .batch_execute("ALTER TABLE app.suppliers ADD COLUMN baseline_note text")
            .await?;
        drop(client);
        task.await??;
    }
    let baseline = started.elapsed();

    let mut rows = Vec::new();
    let base = tenancy_tests::built_in_tenant_version();
    for (step, concurrency) in [(1, 1), (2, 4), (3, 8)] {
        let version = base + step;
        std::fs::write(
            dir.path().join(format!("V{version}__note_{version}.sql")),
            format!("ALTER TABLE customers ADD COLUMN note_{version} text;\n"),
        )?;
        let started = Instant::now();
        let report = tenantctl(
            &app,
            &migrations,
            &[
                "run",
                "--concurrency",
                &concurrency.to_string(),
                "--per-server",
                &concurrency.to_string(),
            ],
        )?;
        let wall = started.elapsed();
        assert_eq!(report["outcome"], "succeeded", "{report}");
        assert_eq!(report["failed"], 0, "{report}");
        let tenants = report["items"]
            .as_array()
            .ok_or("items")?
            .iter()
            .filter(|item| item["kind"] == "tenant")
            .count();
        assert_eq!(tenants, tenant_count, "every tenant");
        rows.push((concurrency, wall));
    }

    let started = Instant::now();
    let report = tenantctl(&app, &migrations, &["run"])?;
    let noop_wall = started.elapsed();
    assert_eq!(report["outcome"], "nothing_to_do", "{report}");
    let noop_inside = Duration::from_millis(report["elapsed_ms"].as_u64().unwrap_or_default());
    let started = Instant::now();
    let status = tenantctl(&app, &migrations, &["status"])?;
    let status_wall = started.elapsed();
    assert_eq!(
        status["summary"]["current"].as_u64(),
        u64::try_from(tenant_count).ok()
    );

    println!();
    println!("fleet migration, {tenant_count} tenant databases on one server, one additive step");
    println!(
        "| way | wall s | per tenant ms | vs bare loop |\n|---|---|---|---|\n\
         | bare loop: connect + ALTER, sequential (baseline) | {:.1} | {:.1} | 1.00x |",
        baseline.as_secs_f64(),
        per_tenant_ms(baseline, tenant_count),
    );
    for (concurrency, wall) in &rows {
        println!(
            "| tenantctl migrate run --concurrency {concurrency} | {:.1} | {:.1} | {:.2}x |",
            wall.as_secs_f64(),
            per_tenant_ms(*wall, tenant_count),
            wall.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    println!(
        "\nnothing to do: {:.0} ms for the whole tenantctl process, {:.0} ms inside the run (ledger read)",
        noop_wall.as_secs_f64() * 1000.0,
        noop_inside.as_secs_f64() * 1000.0
    );
    println!(
        "migrate status: {:.0} ms for the whole tenantctl process",
        status_wall.as_secs_f64() * 1000.0
    );
    Ok(())
}

fn per_tenant_ms(wall: Duration, tenants: usize) -> f64 {
    wall.as_secs_f64() * 1000.0 / tenants.max(1) as f64
}

/// `tenantctl --json migrate <args>` against the bench's catalog; its JSON report.
fn tenantctl(app: &ControlPlane, migrations: &str, args: &[&str]) -> Result<Value, Error> {
    let mut all = vec!["--json", "migrate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--tenant-migrations", migrations]);
    let output = app.tenantctl(&all, "");
    if !output.status.success() {
        return Err(format!(
            "tenantctl migrate {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}
