//! Races and the background jobs: a slow catalog read, final backups on deletion, trials, dead migration runs, hanging servers and busy tenants.

use super::*;

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
            let (status, body) = app.suspend(&token, "acme").await;
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
    app.delete_tenant_now(&token, "broken", FinalBackup::Required)
        .await;
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
        .delete_tenant(&token, "retry", FinalBackup::Required)
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
    app.delete_tenant_now(&token, "retry", FinalBackup::Skip)
        .await;
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
    let (_, body) = app.tenant(&token, "trying").await;
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
    let (status, body) = app.delete_tenant(&token, "busy", FinalBackup::Skip).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("deleting")),
        "{body}"
    );
    // ...and blocks neither another tenant's drop nor the trials.
    app.delete_tenant_now(&token, "gone", FinalBackup::Skip)
        .await;
    sqlx::query("UPDATE tenants SET plan = 'trial', trial_ends_at = now() WHERE id = $1::uuid")
        .bind(trying["id"].as_str().expect("id"))
        .execute(&mut catalog)
        .await
        .expect("end the trial");
    let started = Instant::now();
    eventually(Duration::from_secs(3), "the trial suspended", || async {
        let (_, body) = app.tenant(&token, "trying").await;
        body["status"] == "suspended"
    })
    .await;
    println!(
        "trial suspended {:?} after it ended, with a hanging server",
        started.elapsed()
    );
    let (_, body) = app.tenant(&token, "busy").await;
    assert_eq!(body["status"], "deleting");
    // Once the lock is free, the next round drops it.
    drop(holder);
    eventually(
        Duration::from_secs(5),
        "the busy tenant dropped",
        || async {
            let (_, body) = app.tenant(&token, "busy").await;
            body["status"] == "deleted"
        },
    )
    .await;
}
