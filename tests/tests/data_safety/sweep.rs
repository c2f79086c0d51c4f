//! The sweep and other installations: only unknown objects of ours are quarantined, then dropped; a shared server; a catalog restored from an older dump.

use super::*;

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
