//! Fleet migrations (`tenantctl migrate`) on real PostgreSQL servers: a new step reaches
//! every tenant, failures stop or are reported, canaries, one run at a time, a killed or
//! interrupted run resumes, and the router answers `tenant_migrating` meanwhile.

use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::Value;
use sqlx::Connection;
use tenancy_tests::{ControlPlane, TestPostgres, assert_problem, connect};

const V1: &str = include_str!("../../migrations/tenant/V1__initial.sql");

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
        std::fs::write(dir.path().join("V1__initial.sql"), V1).expect("write V1");
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
        let (status, tenant) = self
            .app
            .call(
                Method::GET,
                &format!("/v1/tenants/{slug}"),
                Some(&self.admin),
                None,
            )
            .await;
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
    assert_eq!(status["target_version"], 1);
    assert_eq!(status["summary"]["current"], 30, "{status}");

    // Warm-pool databases (2 per server), cloned at version 1.
    let dir = fleet.dir().to_owned();
    let env = [
        ("TENANCY_TENANT_MIGRATIONS", dir.as_str()),
        ("TENANCY_WARM_POOL_SIZE", "2"),
    ];
    fleet.app.restart(&env).await;
    let mut catalog = fleet.catalog().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while warm_versions(&mut catalog).await != vec![1; 4] {
        assert!(Instant::now() < deadline, "the warm pools were not filled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fleet.add_step("V2__customer_segments.sql", V2_ADDITIVE);
    // A deploy ships the new step to the control plane too.
    fleet.app.restart(&env).await;

    let plan = json_of(&fleet.migrate(&["plan"]));
    assert_eq!(plan["target_version"], 2);
    assert_eq!(plan["templates"].as_array().expect("templates").len(), 2);
    assert_eq!(plan["warm"].as_array().expect("warm").len(), 4);
    let planned = plan["tenants"].as_array().expect("tenants");
    assert_eq!(planned.len(), 30, "{plan}");
    assert!(
        planned.iter().all(
            |item| item["from_version"] == 1 && item["steps"][0]["name"] == "customer_segments"
        )
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
    assert_eq!(warm_versions(&mut catalog).await, vec![2; 4]);

    let status = fleet.status().await;
    assert_eq!(status["target_version"], 2);
    assert_eq!(status["summary"]["current"], 30, "{status}");
    assert_eq!(status["summary"]["pending"], 0);
    assert_eq!(status["summary"]["templates_pending"], 0);
    for slug in &fleet.slugs {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(history_version(&mut database).await, 2, "{slug}");
        assert!(column_exists(&mut database, "customers", "segment").await);
        assert!(index_exists(&mut database, "customers_segment_idx").await);
    }

    // The control plane shows the same.
    let (code, body) = fleet
        .app
        .call(Method::GET, "/v1/migrations", Some(&fleet.admin), None)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["target_version"], 2);
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
    assert_eq!(body["schema_version"], 2);
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
    sqlx::query("UPDATE tenants SET schema_version = 1 WHERE slug = 'tenant-07'")
        .execute(&mut catalog)
        .await
        .expect("tamper with the catalog");
    let output = fleet.migrate(&["status", "--verify"]);
    let drifted = failed_json(&output);
    let drift = drifted["verify"]["drift"].as_array().expect("drift");
    assert_eq!(drift.len(), 1, "{drifted}");
    assert_eq!(drift[0]["slug"], "tenant-07");
    assert_eq!(drift[0]["catalog_version"], 1);
    assert_eq!(drift[0]["database_version"], 2);
    // A run reconciles it: the step is already in the database, so nothing is applied.
    let report = json_of(&fleet.migrate(&["run"]));
    let items = tenant_items(&report);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["applied_steps"], 0);
    assert_eq!(items[0]["to_version"], 2);
    json_of(&fleet.migrate(&["status", "--verify"]));
}

#[tokio::test]
async fn failing_tenants_stop_the_run_or_are_reported_and_a_failing_canary_touches_nobody_else() {
    let fleet = Fleet::start(30).await;
    fleet.add_step(
        "V2__unique_customer_emails.sql",
        "CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));\n",
    );
    let order = fleet.planned_order();
    assert_eq!(order.len(), 30);
    // Three tenants whose data violates the new unique index, the first at position 4.
    let mut bad = vec![order[3].clone(), order[14].clone(), order[24].clone()];
    bad.sort();
    for slug in &bad {
        let mut database = fleet.tenant_database(slug).await;
        sqlx::query(
            "INSERT INTO app.customers (code, name, email) VALUES \
             ('C-1', 'One', 'same@example.com'), ('C-2', 'Two', 'SAME@example.com')",
        )
        .execute(&mut database)
        .await
        .expect("insert duplicate e-mails");
    }

    // Without --continue-on-error: stops launching at the first failure.
    let output = fleet.migrate(&["run", "--concurrency", "1"]);
    let report = failed_json(&output);
    assert!(
        stderr(&output).contains("stopped at the first failure"),
        "{}",
        stderr(&output)
    );
    assert_eq!(report["outcome"], "failed");
    assert_eq!(slugs_where(&report, false), vec![order[3].clone()]);
    assert_eq!(slugs_where(&report, true).len(), 3, "{report}");
    assert_eq!(
        report["not_started"].as_array().expect("not_started").len(),
        26
    );
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 3, "{status}");
    assert_eq!(status["summary"]["failed"], 1);
    assert_eq!(status["summary"]["pending"], 26);

    // With it: the 27 good tenants are migrated, the 3 bad ones are reported.
    let output = fleet.migrate(&["run", "--concurrency", "4", "--continue-on-error"]);
    let report = failed_json(&output);
    assert_eq!(slugs_where(&report, false), bad);
    assert_eq!(
        slugs_where(&report, true).len(),
        24,
        "the 27 minus the 3 done before"
    );
    for item in tenant_items(&report)
        .into_iter()
        .filter(|item| item["succeeded"] == false)
    {
        let error = item["error"].as_str().expect("error");
        assert!(
            error.contains("could not create unique index") && error.contains("23505"),
            "the Postgres error is reported: {error}"
        );
    }
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 27, "{status}");
    assert_eq!(status["summary"]["failed"], 3);
    let mut failed: Vec<String> = status["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter(|tenant| tenant["state"] == "failed")
        .map(|tenant| {
            assert!(
                tenant["last_error"]
                    .as_str()
                    .is_some_and(|error| error.contains("could not create unique index"))
            );
            tenant["slug"].as_str().expect("slug").to_owned()
        })
        .collect();
    failed.sort();
    assert_eq!(failed, bad);
    // The failed tenants were left exactly as they were.
    for slug in &bad {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(history_version(&mut database).await, 1);
        assert!(!index_exists(&mut database, "customers_email_key").await);
    }

    // Fix the data; the re-run migrates just those three.
    for slug in &bad {
        let mut database = fleet.tenant_database(slug).await;
        sqlx::query("DELETE FROM app.customers WHERE code = 'C-2'")
            .execute(&mut database)
            .await
            .expect("fix the data");
    }
    let report = json_of(&fleet.migrate(&["run"]));
    assert_eq!(slugs_where(&report, true), bad);
    assert_eq!(report["items"].as_array().expect("items").len(), 3);
    assert_eq!(fleet.status().await["summary"]["current"], 30);

    // A canary of 5 with one failing tenant: no other tenant is touched.
    fleet.add_step(
        "V3__unique_supplier_names.sql",
        "CREATE UNIQUE INDEX suppliers_name_key ON suppliers (name);\n",
    );
    let order = fleet.planned_order();
    let mut database = fleet.tenant_database(&order[2]).await;
    sqlx::query("INSERT INTO app.suppliers (code, name) VALUES ('S-1', 'Acme'), ('S-2', 'Acme')")
        .execute(&mut database)
        .await
        .expect("insert duplicate supplier names");
    let output = fleet.migrate(&["run", "--canary", "5", "--continue-on-error"]);
    let report = failed_json(&output);
    assert!(stderr(&output).contains("canary"), "{}", stderr(&output));
    assert_eq!(report["canary_failed"], true);
    assert_eq!(slugs_where(&report, false), vec![order[2].clone()]);
    let mut canaries = order[..5].to_vec();
    canaries.sort();
    let mut touched = slugs_where(&report, true);
    touched.extend(slugs_where(&report, false));
    touched.sort();
    assert_eq!(touched, canaries);
    assert_eq!(
        report["not_started"].as_array().expect("not_started").len(),
        25
    );
    let run_id = report["run_id"].as_i64().expect("run id");
    let mut catalog = fleet.catalog().await;
    let in_ledger: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT tenant_id) FROM migration_ledger WHERE run_id = $1 AND kind = 'tenant'",
    )
    .bind(run_id)
    .fetch_one(&mut catalog)
    .await
    .expect("read the ledger");
    assert_eq!(in_ledger, 5);
    for slug in &order[5..] {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(history_version(&mut database).await, 2, "{slug} untouched");
    }
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

async fn ledger_count(catalog: &mut sqlx::PgConnection, run: Option<i64>, outcome: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM migration_ledger WHERE kind = 'tenant' AND outcome = $2 \
         AND ($1::bigint IS NULL OR run_id = $1)",
    )
    .bind(run)
    .bind(outcome)
    .fetch_one(catalog)
    .await
    .expect("read the ledger")
}

async fn newest_run(catalog: &mut sqlx::PgConnection) -> Option<i64> {
    sqlx::query_scalar("SELECT max(id) FROM migration_runs")
        .fetch_one(catalog)
        .await
        .expect("read the runs")
}

/// Waits until a run newer than `after` has finished `count` tenants; returns its id.
async fn wait_for_progress(catalog: &mut sqlx::PgConnection, after: i64, count: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(run) = newest_run(catalog).await.filter(|run| *run > after)
            && ledger_count(catalog, Some(run), "succeeded").await >= count
        {
            return run;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_run_at_a_time_and_killed_or_stopped_runs_resume_with_no_half_migrated_tenant() {
    let fleet = Fleet::start(12).await;
    // Two changes with a pause between them: a run killed between the two would leave a
    // half-migrated tenant if the steps were not one transaction.
    fleet.add_step(
        "V2__slow_two_part_change.sql",
        "ALTER TABLE customers ADD COLUMN segment text;\n\
         SELECT pg_sleep(0.6);\n\
         CREATE INDEX customers_segment_idx ON customers (segment);\n",
    );
    let mut catalog = fleet.catalog().await;
    let mut first = fleet.spawn_migrate(&["run", "--concurrency", "2"]);
    let run = wait_for_progress(&mut catalog, 0, 3).await;

    // A second run refuses, naming the one that holds the lock.
    let output = fleet.migrate(&["run"]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "another migration run holds the lock: run {run} by tenantctl:"
        )) && message.contains(&format!("pid {}", first.child.id())),
        "{message}"
    );

    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    // Give the server a moment to notice the vanished client and roll back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut migrated = 0;
    for slug in &fleet.slugs {
        let mut database = fleet.tenant_database(slug).await;
        let version = history_version(&mut database).await;
        let column = column_exists(&mut database, "customers", "segment").await;
        let index = index_exists(&mut database, "customers_segment_idx").await;
        assert!(
            (version == 2 && column && index) || (version == 1 && !column && !index),
            "{slug} is half-migrated: version {version}, column {column}, index {index}"
        );
        migrated += usize::from(version == 2);
    }
    assert!(
        (3..12).contains(&migrated),
        "killed mid-way, {migrated} migrated"
    );

    // The control plane's jobs close the dead run and lift its marks (no tenant stays
    // `503 tenant_migrating`); the re-run finishes the rest.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (outcome, marked): (String, i64) = sqlx::query_as(
            "SELECT outcome, (SELECT count(*) FROM tenants WHERE migrating_run IS NOT NULL) \
             FROM migration_runs WHERE id = $1",
        )
        .bind(run)
        .fetch_one(&mut catalog)
        .await
        .expect("read the run");
        if outcome == "interrupted" && marked == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the dead run is still {outcome}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = json_of(&fleet.migrate(&["run", "--concurrency", "2"]));
    assert_eq!(report["interrupted_runs"], serde_json::json!([]));
    assert_eq!(report["outcome"], "succeeded");
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 12, "{status}");
    assert_eq!(status["summary"]["migrating"], 0);
    for slug in &fleet.slugs {
        let mut database = fleet.tenant_database(slug).await;
        assert_eq!(history_version(&mut database).await, 2);
        assert!(index_exists(&mut database, "customers_segment_idx").await);
    }
    let dead_run: String = sqlx::query_scalar("SELECT outcome FROM migration_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&mut catalog)
        .await
        .expect("read the run");
    assert_eq!(dead_run, "interrupted");

    // Ctrl-C: no new tenant is started, those in flight finish, everything is recorded.
    fleet.add_step(
        "V3__slow_step.sql",
        "ALTER TABLE suppliers ADD COLUMN rating int;\nSELECT pg_sleep(0.4);\n",
    );
    let previous = newest_run(&mut catalog).await.expect("a run");
    let mut stopped = fleet.spawn_migrate(&["run", "--concurrency", "1"]);
    let run = wait_for_progress(&mut catalog, previous, 2).await;
    stopped.signal(Signal::SIGINT);
    let code = stopped.wait_exit(Duration::from_secs(30));
    assert_ne!(code, Some(0));
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM migration_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&mut catalog)
        .await
        .expect("read the run");
    assert_eq!(outcome, "stopped");
    assert_eq!(ledger_count(&mut catalog, Some(run), "running").await, 0);
    let done = ledger_count(&mut catalog, Some(run), "succeeded").await;
    assert!((2..12).contains(&done), "{done} done before the stop");
    let status = fleet.status().await;
    assert_eq!(status["summary"]["migrating"], 0);
    assert_eq!(status["summary"]["current"], done, "{status}");
    let report = json_of(&fleet.migrate(&["run", "--concurrency", "4"]));
    assert_eq!(
        i64::try_from(tenant_items(&report).len()).expect("count"),
        12 - done
    );
    assert_eq!(fleet.status().await["summary"]["current"], 12);
}

/// Polls the router until the tenant's customers are served (the router follows the
/// catalog's notifications within milliseconds).
async fn wait_until_served(router: &tenancy_tests::TenantRouter, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = router
            .call(Method::GET, "/v1/customers", Some(token), None)
            .await;
        if code == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "not served: {code} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_router_answers_tenant_migrating_while_a_tenant_is_migrated() {
    let fleet = Fleet::start(2).await;
    let router = fleet.app.start_router(&[]).await;
    let scopes = &["customers.read", "customers.write"];
    let first = fleet
        .app
        .tenant_token(&fleet.admin, "tenant-01", scopes)
        .await;
    let second = fleet
        .app
        .tenant_token(&fleet.admin, "tenant-02", scopes)
        .await;
    let (code, body) = router
        .call(Method::GET, "/v1/customers", Some(&first), None)
        .await;
    assert_eq!(code, 200, "{body}");
    fleet.add_step("V2__customer_segments.sql", V2_ADDITIVE);
    let output = fleet.migrate(&["run", "--tenant", "no-such-tenant"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no migratable tenant with slug no-such-tenant"),
        "{}",
        stderr(&output)
    );

    // The tenant's own long transaction holds a lock the step needs.
    let mut blocker = fleet.tenant_database("tenant-01").await;
    let mut transaction = blocker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE app.customers IN ACCESS SHARE MODE")
        .execute(&mut *transaction)
        .await
        .expect("lock the table");

    // With a short lock timeout the step gives up; the tenant keeps its old schema and
    // is served again.
    let output = fleet.migrate(&["run", "--tenant", "tenant-01", "--lock-timeout", "500ms"]);
    let report = failed_json(&output);
    let items = tenant_items(&report);
    assert_eq!(items.len(), 1);
    assert!(
        items[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("lock timeout") && error.contains("55P03")),
        "{report}"
    );
    wait_until_served(&router, &first).await;

    // With a longer one it waits; meanwhile the router answers 503 tenant_migrating for
    // this tenant only.
    let mut run = fleet.spawn_migrate(&["run", "--tenant", "tenant-01"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = router
            .call(Method::GET, "/v1/customers", Some(&first), None)
            .await;
        if code == 503 && body["code"] == "tenant_migrating" {
            assert_problem(code, &body, 503, "tenant_migrating");
            break;
        }
        assert!(Instant::now() < deadline, "never 503: {code} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = router
        .call(Method::GET, "/v1/customers", Some(&second), None)
        .await;
    assert_eq!(code, 200, "the other tenant is served: {body}");
    transaction.commit().await.expect("release the lock");
    assert_eq!(run.wait_exit(Duration::from_secs(30)), Some(0));

    // Served again, on the new schema.
    wait_until_served(&router, &first).await;
    let mut database = fleet.tenant_database("tenant-01").await;
    assert!(column_exists(&mut database, "customers", "segment").await);
    let status = fleet.status().await;
    assert_eq!(status["summary"]["current"], 1, "{status}");
    assert_eq!(status["summary"]["pending"], 1);
}

#[tokio::test]
async fn a_migrations_directory_that_rewrites_a_built_in_step_is_refused() {
    let fleet = Fleet::start(0).await;
    std::fs::write(
        fleet.dir.path().join("V1__initial.sql"),
        format!("{V1}\n-- edited\n"),
    )
    .expect("edit V1");
    let output = fleet.migrate(&["status"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("differs from the built-in"),
        "{}",
        stderr(&output)
    );
}
