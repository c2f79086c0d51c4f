//! Backups the control plane takes: on request, on schedule, before a drop; retention; two control planes; shutdown; a failing final backup.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_keeps_what_the_plan_says_and_always_the_newest() {
    // Both tenants are on the standard plan: 30 days.
    let fixture = Fixture::start(&["acme", "globex"]).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
        ids.push(created[0]["id"].as_str().expect("id").to_owned());
    }
    let mut old = Vec::new();
    for _ in 0..2 {
        let created = json_of(&fixture.backup(&["create", "--tenant", "globex"]));
        old.push(created[0]["id"].as_str().expect("id").to_owned());
    }
    let mut catalog = connect(&fixture.app.database_url).await;
    for (id, days) in ids
        .iter()
        .zip([45, 31, 10, 1])
        .chain(old.iter().zip([60, 40]))
    {
        sqlx::query(
            "UPDATE backups SET started_at = now() - make_interval(days => $2), \
             completed_at = now() - make_interval(days => $2) WHERE id = $1::uuid",
        )
        .bind(id)
        .bind(days)
        .execute(&mut catalog)
        .await
        .expect("age a backup");
    }
    assert_eq!(fixture.objects().len(), 6);

    let planned = json_of(&fixture.backup(&["prune", "--dry-run"]));
    let mut planned: Vec<&str> = planned
        .as_array()
        .expect("backups")
        .iter()
        .map(|backup| backup["id"].as_str().expect("id"))
        .collect();
    planned.sort_unstable();
    let mut expected = vec![ids[0].as_str(), ids[1].as_str(), old[0].as_str()];
    expected.sort_unstable();
    assert_eq!(planned, expected, "past 30 days, but globex's newest stays");
    assert_eq!(fixture.objects().len(), 6, "a dry run deletes nothing");

    let pruned = json_of(&fixture.backup(&["prune"]));
    assert_eq!(pruned.as_array().expect("backups").len(), 3);
    assert_eq!(fixture.objects().len(), 3);
    let listed = json_of(&fixture.backup(&["list"]));
    let mut left: Vec<&str> = listed
        .as_array()
        .expect("backups")
        .iter()
        .map(|backup| backup["id"].as_str().expect("id"))
        .collect();
    left.sort_unstable();
    let mut kept = vec![ids[2].as_str(), ids[3].as_str(), old[1].as_str()];
    kept.sort_unstable();
    assert_eq!(left, kept);
    // Nothing more to do.
    assert_eq!(json_of(&fixture.backup(&["prune"])), Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_plane_backs_up_on_request_on_schedule_and_before_a_drop() {
    let mut fixture = Fixture::start(&["acme", "globex"]).await;
    let token = fixture.app.admin_token().await;

    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::POST,
            "/v1/tenants/acme/backups",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "running");
    assert_eq!(body["trigger"], "manual");
    let items = wait_for_backups(&fixture, &token, "acme", 1).await;
    assert_eq!(items[0]["id"], body["id"]);
    assert_eq!(items[0]["status"], "complete");
    assert!(items[0].get("upload_id").is_none());
    assert!(items[0].get("error").is_none(), "no internal error text");

    // The tenant's detail names its last backup and sums up its usage (SPEC §5).
    let (status, detail) = fixture.app.tenant(&token, "acme").await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["slug"], "acme");
    assert_eq!(detail["last_backup"]["id"], items[0]["id"], "{detail}");
    assert_eq!(detail["last_backup"]["trigger"], "manual");
    assert_eq!(detail["last_backup"]["bytes"], items[0]["bytes"]);
    assert!(detail["usage"]["requests_last_24h"].is_i64(), "{detail}");
    assert!(
        detail["usage"]["storage_limit_bytes"].as_i64() > Some(0),
        "{detail}"
    );
    assert!(detail.get("failure_reason").is_none(), "{detail}");
    let (_, globex) = fixture.app.tenant(&token, "globex").await;
    assert!(globex["last_backup"].is_null(), "{globex}");

    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::POST,
            "/v1/tenants/nobody/backups",
            Some(&token),
            None,
        )
        .await;
    tenancy_tests::assert_problem(status, &body, 404, "tenant_not_found");
    let (status, body) = fixture
        .app
        .call(reqwest::Method::GET, "/v1/tenants/acme/backups", None, None)
        .await;
    tenancy_tests::assert_problem(status, &body, 401, "missing_token");

    // On schedule (standard plan: every 24 hours): globex has no backup yet, acme has a
    // fresh one.
    let env = Fixture::control_plane_env(fixture.s3_port, "true");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fixture.app.restart(&env).await;
    let token = fixture.app.admin_token().await;
    let items = wait_for_backups(&fixture, &token, "globex", 1).await;
    assert_eq!(items[0]["trigger"], "scheduled");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        backups_of(&fixture, &token, "globex").await.len(),
        1,
        "once per interval"
    );
    assert_eq!(backups_of(&fixture, &token, "acme").await.len(), 1);

    // Deleting a tenant takes a final backup before its database is dropped.
    let body = fixture
        .app
        .delete_tenant_now(&token, "globex", FinalBackup::Required)
        .await;
    assert_eq!(body["status"], "deleted");
    let listed = json_of(&fixture.backup(&["list", "--tenant", "globex"]));
    let triggers: Vec<&str> = listed
        .as_array()
        .expect("backups")
        .iter()
        .map(|backup| backup["trigger"].as_str().expect("trigger"))
        .collect();
    assert_eq!(triggers, ["final", "scheduled"], "newest first");
    let final_id = listed[0]["id"].as_str().expect("id");
    json_of(&fixture.backup(&["verify", final_id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_control_planes_on_one_catalog_back_up_and_suspend_each_tenant_once() {
    let mut fixture = Fixture::start(&["acme", "globex", "initech"]).await;
    let env = Fixture::control_plane_env(fixture.s3_port, "true");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fixture.app.restart(&env).await;
    let (_replica, _) = fixture.app.start_replica(&env).await;
    let token = fixture.app.admin_token().await;
    for slug in ["acme", "globex", "initech"] {
        wait_for_backups(&fixture, &token, slug, 1).await;
    }
    // Every trial ends now.
    let mut catalog = connect(&fixture.app.database_url).await;
    sqlx::query("UPDATE tenants SET plan = 'trial', trial_ends_at = now() - interval '1 minute'")
        .execute(&mut catalog)
        .await
        .expect("end the trials");
    eventually(
        Duration::from_secs(20),
        "the trials suspended",
        async || {
            let active: i64 =
                sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status = 'active'")
                    .fetch_one(&mut catalog)
                    .await
                    .expect("count");
            if active == 0 {
                Ok(())
            } else {
                Err(format!("{active} active"))
            }
        },
    )
    .await;
    // Several more rounds of both control planes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let backups: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM backups WHERE trigger = 'scheduled' GROUP BY tenant_id",
    )
    .fetch_all(&mut catalog)
    .await
    .expect("count backups");
    assert_eq!(backups, vec![1, 1, 1], "each tenant backed up once");
    let suspensions: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'tenant.suspend' GROUP BY entity_id",
    )
    .fetch_all(&mut catalog)
    .await
    .expect("count suspensions");
    assert_eq!(suspensions, vec![1, 1, 1], "each trial suspended once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_waits_for_a_backup_in_flight() {
    let mut fixture = Fixture::start(&["acme"]).await;
    let token = fixture.app.admin_token().await;
    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::POST,
            "/v1/tenants/acme/backups",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // SIGTERM at once: the answer was given, the backup is still running.
    fixture.app.process.signal(Signal::SIGTERM);
    let code = fixture.app.process.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "a clean exit");
    let mut catalog = connect(&fixture.app.database_url).await;
    let (status, bytes): (String, Option<i64>) =
        sqlx::query_as("SELECT status, bytes FROM backups WHERE id = $1::uuid")
            .bind(body["id"].as_str().expect("id"))
            .fetch_one(&mut catalog)
            .await
            .expect("the backup row");
    assert_eq!(
        status, "complete",
        "the backup finished before the process exited"
    );
    assert!(bytes.is_some_and(|bytes| bytes > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_tenant_whose_final_backup_fails_keeps_its_database() {
    let mut fixture = Fixture::start(&["acme"]).await;
    let token = fixture.app.admin_token().await;
    let (database, _) = fixture.tenant_database("acme").await;
    // The store goes away: no final backup can complete.
    fixture.s3.take().expect("the S3 endpoint").stop().await;
    let (status, body) = fixture
        .app
        .delete_tenant(&token, "acme", FinalBackup::Required)
        .await;
    // The request tries the final backup itself (503 `final_backup_failed`) unless the
    // deletions job took the tenant's lock first (202 `deleting`; the job's attempt fails
    // the same way): a request never waits on a busy tenant.
    if status == 202 {
        assert_eq!(body["status"], "deleting", "{body}");
    } else {
        tenancy_tests::assert_problem(status, &body, 503, "final_backup_failed");
    }
    // The jobs retry (every 300 ms) and fail the same way: nothing is dropped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut admin = connect(&fixture.app.postgres.url("postgres")).await;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .expect("look for the database");
    assert!(
        exists,
        "the tenant's database is kept without a final backup"
    );
    let mut catalog = connect(&fixture.app.database_url).await;
    let status: String = sqlx::query_scalar("SELECT status FROM tenants WHERE slug = 'acme'")
        .fetch_one(&mut catalog)
        .await
        .expect("the tenant");
    assert_eq!(status, "deleting");
}
