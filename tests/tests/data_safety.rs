//! Data safety with the real binaries on real PostgreSQL servers: the platform
//! drops only what this installation provably created, never at once, and nothing of a
//! live tenant; a cluster is registered once; a restored catalog destroys nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use tenancy_tests::{ControlPlane, assert_problem, connect, eventually};

/// The sweep as eager as it can be: no minimum age, a 2 s quarantine. Anything it wrongly
/// took for an orphan would be gone within seconds.
const EAGER_SWEEP: [(&str, &str); 2] = [
    ("TENANCY_SWEEP_MIN_AGE", "0s"),
    ("TENANCY_SWEEP_QUARANTINE", "2s"),
];

/// Tenant and warm databases on a server (its superuser URL to `postgres`), with whether
/// they accept connections.
async fn databases(server: &str) -> Vec<(String, bool)> {
    let mut connection = connect(server).await;
    sqlx::query_as(
        "SELECT datname, datallowconn FROM pg_database \
         WHERE datname ~ '^(t_|tenancy_warm_)' ORDER BY 1",
    )
    .fetch_all(&mut connection)
    .await
    .expect("list databases")
}

/// Tenant roles on a server, with whether they may log in.
async fn roles(server: &str) -> Vec<(String, bool)> {
    let mut connection = connect(server).await;
    sqlx::query_as("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname ~ '^t_' ORDER BY 1")
        .fetch_all(&mut connection)
        .await
        .expect("list roles")
}

/// Lets the control plane's jobs (every 300 ms in tests) run several rounds.
async fn several_job_rounds() {
    tokio::time::sleep(Duration::from_secs(4)).await;
}

fn json_of(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "tenantctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("tenantctl --json prints JSON")
}

async fn create(app: &ControlPlane, token: &str, slug: &str) -> Value {
    let (status, body) = app.create_tenant(token, slug).await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn the_same_cluster_under_another_address_is_refused_and_the_sweep_drops_nothing() {
    let app = ControlPlane::start_with(&EAGER_SWEEP).await;
    let token = app.admin_token().await;
    let server = &app.postgres.server;
    let admin_url = server.superuser_url("postgres");
    let main = app.add_server(&token, "main", server, 50).await;
    assert!(
        main["system_identifier"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{main}"
    );
    for slug in ["acme", "globex", "initech", "umbrella"] {
        create(&app, &token, slug).await;
    }
    let before = databases(&admin_url).await;
    assert_eq!(before.len(), 4);

    // The same cluster under another host name: refused, naming the registered server.
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/servers",
            Some(&token),
            Some(json!({
                "name": "again",
                "host": "localhost",
                "port": server.port(),
                "admin_user": tenancy_infra::postgres::SUPERUSER,
                "admin_password": server.superuser_password(),
                "max_tenants": 50,
                "connection_budget": 100,
            })),
        )
        .await;
    assert_problem(status, &body, 409, "server_exists");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("`main`")),
        "{body}"
    );

    // A catalog from before clusters were identified can hold both registrations, with
    // tenants placed on each. The sweep must still drop nothing of anybody's.
    let mut catalog = connect(&app.database_url).await;
    let copy = uuid::Uuid::new_v4();
    let sealed = app
        .sealer
        .seal_secret(
            &format!("server:{copy}:admin_password"),
            &SecretString::from(server.superuser_password().to_owned()),
        )
        .expect("seal");
    sqlx::query(
        "INSERT INTO database_servers (id, name, host, port, admin_user, admin_password, \
         max_tenants, connection_budget, schema_version) \
         SELECT $1, 'legacy-copy', 'localhost', port, admin_user, $2, 50, 100, schema_version \
         FROM database_servers WHERE name = 'main'",
    )
    .bind(copy)
    .bind(&sealed)
    .execute(&mut catalog)
    .await
    .expect("a second registration, as an old catalog could hold");
    sqlx::query("UPDATE tenants SET server_id = $1 WHERE slug IN ('globex', 'umbrella')")
        .bind(copy)
        .execute(&mut catalog)
        .await
        .expect("tenants placed on the second registration");

    several_job_rounds().await;
    assert_eq!(
        databases(&admin_url).await,
        before,
        "every database stays, open"
    );
    assert!(
        roles(&admin_url).await.iter().all(|(_, login)| *login),
        "every tenant role may still log in"
    );
    let orphans = json_of(&app.tenantctl(&["--json", "server", "orphans"], ""));
    assert_eq!(orphans, json!([]), "nothing is an orphan");
}

#[tokio::test]
async fn two_installations_sharing_a_server_touch_nothing_of_each_other() {
    let env = [
        EAGER_SWEEP[0],
        EAGER_SWEEP[1],
        ("TENANCY_WARM_POOL_SIZE", "1"),
    ];
    let first = ControlPlane::start_with(&env).await;
    let second = ControlPlane::start_with(&env).await;
    let shared = &first.postgres.server;
    let admin_url = shared.superuser_url("postgres");
    let first_token = first.admin_token().await;
    let second_token = second.admin_token().await;
    first.add_server(&first_token, "shared", shared, 50).await;
    second.add_server(&second_token, "shared", shared, 50).await;
    // The same slugs in both: they are two platforms.
    for slug in ["acme", "globex"] {
        create(&first, &first_token, slug).await;
        create(&second, &second_token, slug).await;
    }
    // Both warm pools refill (one database each).
    eventually(Duration::from_secs(20), "both warm pools", || async {
        databases(&admin_url)
            .await
            .iter()
            .filter(|(name, _)| name.starts_with("tenancy_warm_"))
            .count()
            == 2
    })
    .await;
    let before = databases(&admin_url).await;
    assert_eq!(before.len(), 6, "{before:?}");

    several_job_rounds().await;
    assert_eq!(
        databases(&admin_url).await,
        before,
        "nothing dropped or closed"
    );
    assert!(roles(&admin_url).await.iter().all(|(_, login)| *login));
    for app in [&first, &second] {
        let orphans = json_of(&app.tenantctl(&["--json", "server", "orphans"], ""));
        assert_eq!(orphans, json!([]));
    }

    // Both serve their own tenants.
    for (app, token) in [(&first, &first_token), (&second, &second_token)] {
        let router = app.start_router(&[]).await;
        for slug in ["acme", "globex"] {
            let tenant_token = app
                .tenant_token(token, slug, &["customers.read", "customers.write"])
                .await;
            let (status, body) = router
                .call(
                    Method::POST,
                    "/v1/customers",
                    Some(&tenant_token),
                    Some(json!({ "code": "C-1", "name": format!("{slug} customer") })),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            let (status, body) = router
                .call(Method::GET, "/v1/customers", Some(&tenant_token), None)
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["items"].as_array().map(Vec::len), Some(1), "{body}");
        }
    }
}

#[tokio::test]
async fn a_catalog_restored_from_an_older_dump_destroys_nothing_and_newer_tenants_are_adopted() {
    let env = [
        ("TENANCY_SWEEP_MIN_AGE", "0s"),
        ("TENANCY_SWEEP_QUARANTINE", "1h"),
    ];
    let mut app = ControlPlane::start_with(&env).await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    let admin_url = app.postgres.server.superuser_url("postgres");
    let pg_dump = app.postgres.server.binaries().path("pg_dump");
    let pg_restore = app.postgres.server.binaries().path("pg_restore");
    create(&app, &token, "early").await;

    let dump = tempfile::NamedTempFile::new().expect("a dump file");
    let dumped = Command::new(pg_dump)
        .args(["--format=custom", "--file"])
        .arg(dump.path())
        .arg(&app.database_url)
        .output()
        .expect("run pg_dump");
    assert!(dumped.status.success(), "{dumped:?}");

    // A tenant created after the dump, with data.
    let later = create(&app, &token, "later").await;
    let later_database = later["database_name"].as_str().expect("db").to_owned();
    {
        let router = app.start_router(&[]).await;
        let tenant_token = app
            .tenant_token(&token, "later", &["customers.write"])
            .await;
        let (status, body) = router
            .call(
                Method::POST,
                "/v1/customers",
                Some(&tenant_token),
                Some(json!({ "code": "C-LATER", "name": "Made after the dump" })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    // The catalog goes back to the dump; the control plane starts on it.
    app.stop();
    let mut admin = connect(&admin_url).await;
    sqlx::query("DROP DATABASE catalog WITH (FORCE)")
        .execute(&mut admin)
        .await
        .expect("drop the catalog");
    sqlx::query("CREATE DATABASE catalog")
        .execute(&mut admin)
        .await
        .expect("create the catalog");
    let restored = Command::new(pg_restore)
        .args(["--exit-on-error", "--dbname"])
        .arg(&app.database_url)
        .arg(dump.path())
        .output()
        .expect("run pg_restore");
    assert!(restored.status.success(), "{restored:?}");
    app.restart(&env).await;

    // The newer tenant's database is quarantined, not dropped; the older one is untouched.
    eventually(
        Duration::from_secs(20),
        "the unknown database quarantined",
        || async {
            databases(&admin_url)
                .await
                .contains(&(later_database.clone(), false))
        },
    )
    .await;
    several_job_rounds().await;
    let now = databases(&admin_url).await;
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&(later_database.clone(), false)));
    let later_role = format!("{later_database}_app");
    assert!(
        roles(&admin_url)
            .await
            .contains(&(later_role.clone(), false))
    );
    let orphans = json_of(&app.tenantctl(&["--json", "server", "orphans"], ""));
    let listed: Vec<(&str, &str)> = orphans
        .as_array()
        .expect("a list")
        .iter()
        .map(|orphan| {
            (
                orphan["name"].as_str().unwrap_or_default(),
                orphan["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (later_database.as_str(), "quarantined"),
            (later_role.as_str(), "quarantined")
        ],
        "{orphans}"
    );
    assert!(orphans[0]["drop_after"].is_string());

    // Adopted back: a tenant again, with its data, served by the router.
    let adopted = json_of(&app.tenantctl(
        &[
            "--json",
            "server",
            "adopt",
            "--server",
            "main",
            &later_database,
            "--slug",
            "later",
            "--name",
            "Later Inc.",
            "--plan",
            "standard",
        ],
        "",
    ));
    assert_eq!(adopted["status"], "active", "{adopted}");
    assert_eq!(adopted["id"], later["id"]);
    assert!(
        databases(&admin_url)
            .await
            .contains(&(later_database.clone(), true))
    );
    let router = app.start_router(&[]).await;
    let tenant_token = app.tenant_token(&token, "later", &["customers.read"]).await;
    let (status, body) = router
        .call(Method::GET, "/v1/customers", Some(&tenant_token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["code"], "C-LATER", "{body}");
    let orphans = json_of(&app.tenantctl(&["--json", "server", "orphans"], ""));
    assert_eq!(orphans, json!([]));
    // Adopting it again, or a database that is not ours, is refused.
    let again = app.tenantctl(
        &[
            "server",
            "adopt",
            "--server",
            "main",
            &later_database,
            "--slug",
            "again",
            "--name",
            "Again",
            "--plan",
            "standard",
        ],
        "",
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("knows tenant"));
}

/// Creates a database and its role as a stray left on the server, with a comment.
async fn stray(admin: &mut sqlx::PgConnection, comment: Option<String>) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut *admin)
        .await
        .expect("stray database");
    sqlx::query(&format!("CREATE ROLE {name}_app LOGIN"))
        .execute(&mut *admin)
        .await
        .expect("stray role");
    if let Some(text) = comment {
        self::comment(admin, &name, &text).await;
    }
    name
}

/// Comments a stray database and its role.
async fn comment(admin: &mut sqlx::PgConnection, name: &str, text: &str) {
    sqlx::query(&format!("COMMENT ON DATABASE {name} IS '{text}'"))
        .execute(&mut *admin)
        .await
        .expect("comment");
    sqlx::query(&format!("COMMENT ON ROLE {name}_app IS '{text}'"))
        .execute(&mut *admin)
        .await
        .expect("comment");
}

#[tokio::test]
async fn only_unknown_objects_of_ours_are_quarantined_then_dropped() {
    let env = [
        ("TENANCY_SWEEP_MIN_AGE", "30m"),
        ("TENANCY_SWEEP_QUARANTINE", "2s"),
    ];
    let mut app = ControlPlane::start_with(&env).await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    let admin_url = app.postgres.server.superuser_url("postgres");
    let kept = create(&app, &token, "kept").await;
    let ours = app.installation_id().await;
    let two_hours_ago = chrono::Utc::now().timestamp() - 7_200;
    let mut admin = connect(&admin_url).await;
    // Ours and lost long ago: quarantined, then dropped.
    let lost = stray(
        &mut admin,
        Some(format!(
            "tenancy-owned installation={ours} created={two_hours_ago}"
        )),
    )
    .await;
    // Ours but just made: too young to touch.
    let young = stray(
        &mut admin,
        Some(format!(
            "tenancy-owned installation={ours} created={}",
            chrono::Utc::now().timestamp()
        )),
    )
    .await;
    // Ours, old, but somebody is connected to it: not closed under them. (Connected
    // before it is marked, so no sweep sees it marked and idle.)
    let busy = stray(&mut admin, None).await;
    let _session = connect(&app.postgres.server.superuser_url(&busy)).await;
    comment(
        &mut admin,
        &busy,
        &format!("tenancy-owned installation={ours} created={two_hours_ago}"),
    )
    .await;
    // Another installation's, and one nobody marked: never touched.
    let foreign = stray(
        &mut admin,
        Some(format!(
            "tenancy-owned installation={} created={two_hours_ago}",
            uuid::Uuid::new_v4()
        )),
    )
    .await;
    let unmarked = stray(&mut admin, None).await;

    eventually(
        Duration::from_secs(20),
        "the lost objects dropped",
        || async {
            let names: Vec<String> = databases(&admin_url)
                .await
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let roles: Vec<String> = roles(&admin_url)
                .await
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            !names.contains(&lost) && !roles.contains(&format!("{lost}_app"))
        },
    )
    .await;
    let mut expected: Vec<(String, bool)> = [&young, &busy, &foreign, &unmarked]
        .into_iter()
        .map(|name| (name.clone(), true))
        .chain([(kept["database_name"].as_str().expect("db").to_owned(), true)])
        .collect();
    expected.sort();
    assert_eq!(databases(&admin_url).await, expected);
    let orphans = json_of(&app.tenantctl(&["--json", "server", "orphans"], ""));
    let mut states: Vec<(String, String)> = orphans
        .as_array()
        .expect("a list")
        .iter()
        .filter(|orphan| orphan["kind"] == "database")
        .map(|orphan| {
            (
                orphan["name"].as_str().unwrap_or_default().to_owned(),
                orphan["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    states.sort();
    let mut expected_states = vec![
        (young.clone(), "young".to_owned()),
        (busy.clone(), "in_use".to_owned()),
    ];
    expected_states.sort();
    assert_eq!(states, expected_states, "{orphans}");
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("tenancy_control_plane_sweep_orphans{state=\"young\"} 2"),
        "the young database and role are counted: {metrics}"
    );

    // In `report` mode a lost object is only reported.
    app.restart(&[
        ("TENANCY_SWEEP", "report"),
        ("TENANCY_SWEEP_MIN_AGE", "0s"),
        ("TENANCY_SWEEP_QUARANTINE", "0s"),
    ])
    .await;
    let reported = stray(
        &mut admin,
        Some(format!(
            "tenancy-owned installation={ours} created={two_hours_ago}"
        )),
    )
    .await;
    several_job_rounds().await;
    assert!(
        databases(&admin_url)
            .await
            .contains(&(reported.clone(), true))
    );
    let orphans =
        json_of(&app.tenantctl(&["--json", "server", "orphans", "--sweep", "report"], ""));
    assert!(
        orphans
            .as_array()
            .expect("a list")
            .iter()
            .any(|orphan| { orphan["name"] == reported.as_str() && orphan["state"] == "reported" }),
        "{orphans}"
    );
}

#[tokio::test]
async fn a_slow_catalog_read_racing_a_suspend_never_serves_the_suspended_tenant() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    create(&app, &token, "acme").await;
    let tenant_token = app.tenant_token(&token, "acme", &["customers.read"]).await;
    // Every directory read of the catalog takes 1.5 s longer than it should.
    let router = app
        .start_router(&[
            ("TENANCY_FAULT_DIRECTORY_DELAY", "1500ms"),
            ("TENANCY_DIRECTORY_TTL", "10m"),
        ])
        .await;
    // The first request reads the tenant (still active); the suspend commits while that
    // read is on its way back.
    let (first, suspended_at) = tokio::join!(
        router.call(Method::GET, "/v1/customers", Some(&tenant_token), None),
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let (status, body) = app
                .call(Method::POST, "/v1/tenants/acme/suspend", Some(&token), None)
                .await;
            assert_eq!(status, 200, "{body}");
            Instant::now()
        }
    );
    let answered_at = Instant::now();
    assert!(answered_at > suspended_at + Duration::from_secs(1));
    assert_problem(first.0, &first.1, 403, "tenant_suspended");
    // And never after: the cache holds the suspension, not the older read.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let (status, body) = router
            .call(Method::GET, "/v1/customers", Some(&tenant_token), None)
            .await;
        assert_problem(status, &body, 403, "tenant_suspended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deletion_needs_a_final_backup_unless_there_is_no_database_and_a_retry_takes_its_own_body()
{
    let app = ControlPlane::start_with(&[("TENANCY_DELETE_GRACE", "0s")]).await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    let admin_url = app.postgres.server.superuser_url("postgres");
    let mut admin = connect(&admin_url).await;

    // Provisioning fails while the template is away: two `failed` tenants.
    sqlx::query("ALTER DATABASE tenancy_template RENAME TO tenancy_template_away")
        .execute(&mut admin)
        .await
        .expect("move the template away");
    for slug in ["broken", "retry"] {
        let (status, body) = app.create_tenant(&token, slug).await;
        assert_problem(status, &body, 503, "provisioning_failed");
    }
    sqlx::query("ALTER DATABASE tenancy_template_away RENAME TO tenancy_template")
        .execute(&mut admin)
        .await
        .expect("bring the template back");

    // A failed tenant has no database: deleted at once without any backup, slug free.
    let (status, body) = app
        .call(Method::DELETE, "/v1/tenants/broken", Some(&token), None)
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("deleted")),
        "{body}"
    );
    create(&app, &token, "broken").await;

    // A failed slug sent again with another body is provisioned with that body.
    let (status, again) = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&token),
            Some(json!({
                "slug": "retry",
                "name": "Second Try Ltd",
                "plan": "enterprise",
                "admin_email": "second@retry.example",
                "admin_password": "another long password",
            })),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(
        (again["name"].as_str(), again["plan"].as_str()),
        (Some("Second Try Ltd"), Some("enterprise"))
    );
    let database = again["database_name"].as_str().expect("db");
    let mut tenant_db = connect(&app.postgres.server.superuser_url(database)).await;
    let admins: Vec<String> = sqlx::query_scalar("SELECT email FROM app.users")
        .fetch_all(&mut tenant_db)
        .await
        .expect("the tenant's users");
    assert_eq!(admins, vec!["second@retry.example".to_owned()]);

    // A tenant with a database and no backups configured: refused, then waived.
    let (status, body) = app
        .call(Method::DELETE, "/v1/tenants/retry", Some(&token), None)
        .await;
    assert_problem(status, &body, 409, "final_backup_unavailable");
    let (status, body) = app
        .call(
            Method::DELETE,
            "/v1/tenants/retry?final_backup=bogus",
            Some(&token),
            None,
        )
        .await;
    assert_problem(status, &body, 400, "bad_request");
    assert!(
        databases(&admin_url)
            .await
            .iter()
            .any(|(name, _)| name == database)
    );
    let (status, body) = app
        .call(
            Method::DELETE,
            "/v1/tenants/retry?final_backup=skip",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("deleted")),
        "{body}"
    );
    assert!(
        !databases(&admin_url)
            .await
            .iter()
            .any(|(name, _)| name == database)
    );
}

#[tokio::test]
async fn a_trial_moved_to_a_paid_plan_stays_active_past_its_trial_date() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&token),
            Some(json!({ "slug": "trying", "name": "Trying", "plan": "trial",
                "admin_email": "owner@trying.example", "admin_password": "a long enough password" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut catalog = connect(&app.database_url).await;
    sqlx::query(
        "UPDATE tenants SET trial_ends_at = now() + interval '1 second' WHERE slug = 'trying'",
    )
    .execute(&mut catalog)
    .await
    .expect("a trial about to end");
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/tenants/trying",
            Some(&token),
            Some(json!({ "plan": "standard" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["trial_ends_at"].is_null(), "{body}");
    several_job_rounds().await;
    let (_, body) = app
        .call(Method::GET, "/v1/tenants/trying", Some(&token), None)
        .await;
    assert_eq!(body["status"], "active", "{body}");
    // Back on `trial`, a new trial starts.
    let (_, body) = app
        .call(
            Method::PATCH,
            "/v1/tenants/trying",
            Some(&token),
            Some(json!({ "plan": "trial" })),
        )
        .await;
    let ends: chrono::DateTime<chrono::Utc> = body["trial_ends_at"]
        .as_str()
        .expect("a trial end")
        .parse()
        .expect("a time");
    assert!(
        (13..=14).contains(&(ends - chrono::Utc::now()).num_days()),
        "{body}"
    );
}

#[tokio::test]
async fn the_jobs_lift_the_marks_of_a_migration_run_whose_process_died() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    create(&app, &token, "acme").await;
    let tenant_token = app.tenant_token(&token, "acme", &["customers.read"]).await;
    let router = app.start_router(&[]).await;
    // What a `tenantctl migrate run` killed mid-way leaves: its run `running`, a tenant
    // marked as being migrated, and nobody holding the run lock.
    let mut catalog = connect(&app.database_url).await;
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO migration_runs (target_version, started_by, options) \
         VALUES (99, 'tenantctl:killed', '{}') RETURNING id",
    )
    .fetch_one(&mut catalog)
    .await
    .expect("a dead run");
    sqlx::query("UPDATE tenants SET migrating_run = $1 WHERE slug = 'acme'")
        .bind(run)
        .execute(&mut catalog)
        .await
        .expect("its mark");
    // The jobs (every 300 ms) close the run and lift the mark: the tenant is served again.
    eventually(
        Duration::from_secs(5),
        "the tenant served again",
        || async {
            let (status, _) = router
                .call(Method::GET, "/v1/customers", Some(&tenant_token), None)
                .await;
            status == 200
        },
    )
    .await;
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM migration_runs WHERE id = $1")
        .bind(run)
        .fetch_one(&mut catalog)
        .await
        .expect("the run");
    assert_eq!(outcome, "interrupted");
}

/// The advisory lock key the control plane takes for a tenant's work.
fn tenant_lock_key(id: uuid::Uuid) -> i64 {
    let bytes: [u8; 8] = id.as_bytes()[..8].try_into().expect("8 bytes");
    i64::from_be_bytes(bytes) ^ 0x7465_6e61_6e74_0000
}

#[tokio::test]
async fn a_hanging_server_or_a_busy_tenant_holds_up_no_other_job() {
    let app = ControlPlane::start_with(&[("TENANCY_DELETE_GRACE", "0s")]).await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    // A "server" that accepts connections and never says a word: every job that talks to
    // it (the sweep, storage sampling) spends its connect timeout there each round.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let tarpit_port = tarpit.local_addr().expect("address").port();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = tarpit.accept().await {
            held.push(socket);
        }
    });
    let mut catalog = connect(&app.database_url).await;
    let id = uuid::Uuid::new_v4();
    let sealed = app
        .sealer
        .seal_secret(
            &format!("server:{id}:admin_password"),
            &SecretString::from("whatever".to_owned()),
        )
        .expect("seal");
    sqlx::query(
        "INSERT INTO database_servers (id, name, host, port, admin_user, admin_password, \
         max_tenants, connection_budget, status) \
         VALUES ($1, 'hanging', '127.0.0.1', $2, 'postgres', $3, 10, 10, 'draining')",
    )
    .bind(id)
    .bind(i32::from(tarpit_port))
    .bind(&sealed)
    .execute(&mut catalog)
    .await
    .expect("register the hanging server");

    let trying = create(&app, &token, "trying").await;
    let busy = create(&app, &token, "busy").await;
    create(&app, &token, "gone").await;
    // A tenant whose lock is held (as by a long backup) stays `deleting`...
    let busy_id: uuid::Uuid = busy["id"].as_str().expect("id").parse().expect("uuid");
    let mut holder = connect(&app.database_url).await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(tenant_lock_key(busy_id))
        .execute(&mut holder)
        .await
        .expect("hold the tenant's lock");
    let (status, body) = app
        .call(
            Method::DELETE,
            "/v1/tenants/busy?final_backup=skip",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("deleting")),
        "{body}"
    );
    // ...and blocks neither another tenant's drop nor the trials.
    let (status, body) = app
        .call(
            Method::DELETE,
            "/v1/tenants/gone?final_backup=skip",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("deleted")),
        "{body}"
    );
    sqlx::query("UPDATE tenants SET plan = 'trial', trial_ends_at = now() WHERE id = $1::uuid")
        .bind(trying["id"].as_str().expect("id"))
        .execute(&mut catalog)
        .await
        .expect("end the trial");
    let started = Instant::now();
    eventually(Duration::from_secs(3), "the trial suspended", || async {
        let (_, body) = app
            .call(Method::GET, "/v1/tenants/trying", Some(&token), None)
            .await;
        body["status"] == "suspended"
    })
    .await;
    println!(
        "trial suspended {:?} after it ended, with a hanging server",
        started.elapsed()
    );
    let (_, body) = app
        .call(Method::GET, "/v1/tenants/busy", Some(&token), None)
        .await;
    assert_eq!(body["status"], "deleting");
    // Once the lock is free, the next round drops it.
    drop(holder);
    eventually(
        Duration::from_secs(5),
        "the busy tenant dropped",
        || async {
            let (_, body) = app
                .call(Method::GET, "/v1/tenants/busy", Some(&token), None)
                .await;
            body["status"] == "deleted"
        },
    )
    .await;
}
