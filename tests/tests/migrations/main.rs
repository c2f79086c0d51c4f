//! Fleet migrations (`tenantctl migrate`) on real PostgreSQL servers: a new step reaches
//! every tenant, failures stop or are reported, canaries, one run at a time, a killed or
//! interrupted run resumes, and the router answers `tenant_migrating` meanwhile.

use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::Value;
use sqlx::Connection;
use tenancy_tests::{ControlPlane, TestPostgres, assert_problem, connect, eventually};

mod failures;
mod serving;
mod upgrades;

/// The newest built-in step; a test adds its own after it.
fn base() -> i64 {
    tenancy_tests::built_in_tenant_version()
}

/// The file name of the test's `n`-th own step.
fn step(n: i64, name: &str) -> String {
    format!("V{}__{name}.sql", base() + n)
}

/// A control plane on two servers with `count` tenants, and a migrations directory (the
/// built-in step, to which tests add steps) that the control plane and tenantctl use.
struct Fleet {
    app: ControlPlane,
    second: TestPostgres,
    admin: String,
    dir: tempfile::TempDir,
    slugs: Vec<String>,
}

impl Fleet {
    async fn start(count: usize) -> Self {
        let dir = tenancy_tests::temp_dir();
        tenancy_tests::write_built_in_tenant_steps(dir.path());
        let migrations = dir.path().to_str().expect("utf-8 path").to_owned();
        let app = ControlPlane::start_with(&[("TENANCY_TENANT_MIGRATIONS", &migrations)]).await;
        let admin = app.admin_token().await;
        let second = TestPostgres::start_distinct();
        app.add_server(&admin, "main", &app.postgres.server, 100)
            .await;
        app.add_server(&admin, "second", &second.server, 100).await;
        let slugs: Vec<String> = (1..=count).map(|n| format!("tenant-{n:02}")).collect();
        for chunk in slugs.chunks(4) {
            let created =
                futures::future::join_all(chunk.iter().map(|slug| app.create_tenant(&admin, slug)))
                    .await;
            for (status, body) in created {
                assert_eq!(status, 201, "{body}");
            }
        }
        Self {
            app,
            second,
            admin,
            dir,
            slugs,
        }
    }

    fn add_step(&self, file: &str, sql: &str) {
        std::fs::write(self.dir.path().join(file), sql).expect("write a migration step");
    }

    fn dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    /// `--json migrate <args> --tenant-migrations <dir>`.
    fn migrate_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--json", "migrate"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--tenant-migrations", self.dir()]);
        all
    }

    fn migrate(&self, args: &[&str]) -> Output {
        self.app.tenantctl(&self.migrate_args(args), "")
    }

    fn spawn_migrate(&self, args: &[&str]) -> tenancy_tests::Process {
        self.app.tenantctl_spawn(&self.migrate_args(args))
    }

    /// A superuser connection to a tenant's own database.
    async fn tenant_database(&self, slug: &str) -> sqlx::PgConnection {
        let (status, tenant) = self.app.tenant(&self.admin, slug).await;
        assert_eq!(status, 200, "{tenant}");
        let database = tenant["database_name"].as_str().expect("database_name");
        let server = match tenant["server"].as_str() {
            Some("main") => &self.app.postgres,
            Some("second") => &self.second,
            other => panic!("unknown server {other:?}"),
        };
        connect(&server.url(database)).await
    }

    async fn catalog(&self) -> sqlx::PgConnection {
        connect(&self.app.database_url).await
    }

    /// The tenants a run would take, in its order.
    fn planned_order(&self) -> Vec<String> {
        let plan = json_of(&self.migrate(&["plan"]));
        plan["tenants"]
            .as_array()
            .expect("tenants")
            .iter()
            .map(|item| item["slug"].as_str().expect("slug").to_owned())
            .collect()
    }

    async fn status(&self) -> Value {
        json_of(&self.migrate(&["status"]))
    }
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "tenantctl failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// The JSON report of a run that is expected to fail (non-zero exit).
fn failed_json(output: &Output) -> Value {
    assert!(
        !output.status.success(),
        "tenantctl should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("JSON report on stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn tenant_items(report: &Value) -> Vec<&Value> {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|item| item["kind"] == "tenant")
        .collect()
}

fn slugs_where(report: &Value, succeeded: bool) -> Vec<String> {
    let mut slugs: Vec<String> = tenant_items(report)
        .into_iter()
        .filter(|item| item["succeeded"] == succeeded)
        .map(|item| item["slug"].as_str().expect("slug").to_owned())
        .collect();
    slugs.sort();
    slugs
}

/// The version a tenant database's own history is at.
async fn history_version(database: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT max(version)::bigint FROM app.refinery_schema_history")
        .fetch_one(database)
        .await
        .expect("read the history")
}

async fn column_exists(database: &mut sqlx::PgConnection, table: &str, column: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = 'app' AND table_name = $1 AND column_name = $2)",
    )
    .bind(table)
    .bind(column)
    .fetch_one(database)
    .await
    .expect("read the columns")
}

async fn index_exists(database: &mut sqlx::PgConnection, name: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'app' AND indexname = $1)",
    )
    .bind(name)
    .fetch_one(database)
    .await
    .expect("read the indexes")
}

const V2_ADDITIVE: &str = "ALTER TABLE customers ADD COLUMN segment text;\n\
     CREATE INDEX customers_segment_idx ON customers (segment);\n";

#[tokio::test]
async fn a_new_step_reaches_every_tenant_and_new_tenants_are_born_current() {
    let mut fleet = Fleet::start(30).await;
    let status = fleet.status().await;
    assert_eq!(status["target_version"], base());
    assert_eq!(status["summary"]["current"], 30, "{status}");

    // Warm-pool databases (2 per server), cloned at the built-in version.
    let dir = fleet.dir().to_owned();
    let env = [
        ("TENANCY_TENANT_MIGRATIONS", dir.as_str()),
        ("TENANCY_WARM_POOL_SIZE", "2"),
    ];
    fleet.app.restart(&env).await;
    let mut catalog = fleet.catalog().await;
    eventually(
        Duration::from_secs(30),
        "the warm pools filled",
        async || warm_versions(&mut catalog).await == vec![base(); 4],
    )
    .await;

    fleet.add_step(&step(1, "customer_segments"), V2_ADDITIVE);
    // A deploy ships the new step to the control plane too.
    fleet.app.restart(&env).await;

    let plan = json_of(&fleet.migrate(&["plan"]));
    assert_eq!(plan["target_version"], base() + 1);
    assert_eq!(plan["templates"].as_array().expect("templates").len(), 2);
    assert_eq!(plan["warm"].as_array().expect("warm").len(), 4);
    let planned = plan["tenants"].as_array().expect("tenants");
    assert_eq!(planned.len(), 30, "{plan}");
    assert!(
        planned.iter().all(|item| item["from_version"] == base()
            && item["steps"][0]["name"] == "customer_segments")
    );
    // Interleaved over the servers: the first two are on different servers.
    assert_ne!(planned[0]["server"], planned[1]["server"]);
    // The plan changed nothing.
    assert_eq!(fleet.status().await["summary"]["pending"], 30);

    let report = json_of(&fleet.migrate(&["run", "--concurrency", "4"]));
    assert_eq!(report["outcome"], "succeeded", "{report}");
    assert_eq!(
        report["succeeded"], 36,
        "2 templates, 4 warm databases and 30 tenants: {report}"
    );
    assert_eq!(report["failed"], 0);
    let kinds: Vec<&str> = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(&kinds[..2], ["template", "template"], "templates go first");
    assert_eq!(&kinds[2..6], ["warm"; 4], "then warm databases");
    assert_eq!(warm_versions(&mut catalog).await, vec![base() + 1; 4]);

    let status = fleet.status().await;
    assert_eq!(status["target_version"], base() + 1);
    assert_eq!(status["summary"]["current"], 30, "{status}");
    assert_eq!(status["summary"]["pending"], 0);
    assert_eq!(status["summary"]["templates_pending"], 0);
    for slug in &fleet.slugs {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(history_version(&mut database).await, base() + 1, "{slug}");
        assert!(column_exists(&mut database, "customers", "segment").await);
        assert!(index_exists(&mut database, "customers_segment_idx").await);
    }

    // The control plane shows the same.
    let (code, body) = fleet
        .app
        .call(Method::GET, "/v1/migrations", Some(&fleet.admin), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["target_version"], base() + 1);
    assert_eq!(body["summary"], status["summary"]);
    assert_eq!(body["tenants"].as_array().expect("tenants").len(), 30);
    let (code, body) = fleet
        .app
        .call(Method::GET, "/v1/migrations", None, None)
        .await;
    assert_problem(code, &body, 401, "missing_token");

    // A tenant created now gets a migrated warm database (or a clone of the migrated
    // template): current from birth.
    let (code, body) = fleet.app.create_tenant(&fleet.admin, "newcomer").await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["schema_version"], base() + 1);
    let mut database = fleet.tenant_database("newcomer").await;
    assert!(column_exists(&mut database, "customers", "segment").await);

    // Nothing left: the run answers from the ledger without opening a tenant database.
    let started = Instant::now();
    let report = json_of(&fleet.migrate(&["run"]));
    assert_eq!(report["outcome"], "nothing_to_do", "{report}");
    assert!(report["run_id"].is_null());
    assert!(started.elapsed() < Duration::from_secs(10));

    // --verify opens every database; drift between the catalog and a database is reported.
    let verified = json_of(&fleet.migrate(&["status", "--verify"]));
    assert_eq!(verified["verify"]["checked"], 31);
    assert_eq!(verified["verify"]["drift"], Value::Array(vec![]));
    sqlx::query("UPDATE tenants SET schema_version = $1 WHERE slug = 'tenant-07'")
        .bind(base())
        .execute(&mut catalog)
        .await
        .expect("tamper with the catalog");
    let output = fleet.migrate(&["status", "--verify"]);
    let drifted = failed_json(&output);
    let drift = drifted["verify"]["drift"].as_array().expect("drift");
    assert_eq!(drift.len(), 1, "{drifted}");
    assert_eq!(drift[0]["slug"], "tenant-07");
    assert_eq!(drift[0]["catalog_version"], base());
    assert_eq!(drift[0]["database_version"], base() + 1);
    // A run reconciles it: the step is already in the database, so nothing is applied.
    let report = json_of(&fleet.migrate(&["run"]));
    let items = tenant_items(&report);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["applied_steps"], 0);
    assert_eq!(items[0]["to_version"], base() + 1);
    json_of(&fleet.migrate(&["status", "--verify"]));
}

/// The versions of the ready warm databases.
async fn warm_versions(catalog: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT coalesce(schema_version, 0) FROM warm_databases WHERE ready ORDER BY name",
    )
    .fetch_all(catalog)
    .await
    .expect("read the warm pool")
}
