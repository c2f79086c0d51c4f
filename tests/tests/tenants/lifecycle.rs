//! A tenant's life: provisioning finished after a crash, one tenant per slug, bad input refused before DDL, plan changes, suspension, deletion, expired trials.

use super::*;

#[tokio::test]
async fn a_provisioning_killed_between_steps_is_finished_after_a_restart() {
    for step in ["role", "database", "configured"] {
        let mut app = ControlPlane::start_with(&[("TENANCY_FAULT_AFTER_STEP", step)]).await;
        let token = app.admin_token().await;
        app.add_server(&token, "main", &app.postgres.server, 50)
            .await;
        let slug = format!("crash-{step}");
        let request = app
            .client
            .post(app.url("/v1/tenants"))
            .bearer_auth(&token)
            .json(&json!({ "slug": slug, "name": "Crash", "plan": "trial",
                           "admin_email": "owner@crash.example", "admin_password": "a long enough password" }))
            .send()
            .await;
        assert!(request.is_err(), "the process died mid-request ({step})");
        assert_ne!(
            app.process.wait_exit(Duration::from_secs(10)),
            Some(0),
            "it was aborted"
        );

        // What the dead process left: the tenant is recorded and still provisioning.
        let mut catalog = connect(&app.database_url).await;
        let (status, recorded_step): (String, Option<String>) =
            sqlx::query_as("SELECT status, provisioning_step FROM tenants WHERE slug = $1")
                .bind(&slug)
                .fetch_one(&mut catalog)
                .await
                .expect("the tenant row");
        assert_eq!(
            (status.as_str(), recorded_step.as_deref()),
            ("provisioning", Some(step))
        );

        // A restart finishes it.
        app.restart(&[]).await;
        let what = format!("finished after a restart ({step})");
        let tenant = eventually(Duration::from_secs(20), &what, || async {
            let (_, tenant) = app.tenant(&token, &slug).await;
            if tenant["status"] == "active" {
                Ok(tenant)
            } else {
                Err(tenant.to_string())
            }
        })
        .await;
        // Exactly the objects the catalog knows, and the tenant works.
        let database = tenant["database_name"]
            .as_str()
            .expect("database")
            .to_owned();
        assert_eq!(
            tenant_databases(&app.postgres.server).await,
            vec![database.clone()]
        );
        assert_eq!(
            tenant_roles(&app.postgres.server).await,
            vec![role_of(&tenant)]
        );
        let password = role_password(&app, tenant["id"].as_str().expect("id")).await;
        let mut own = connect_as(
            &app.postgres.server,
            &role_of(&tenant),
            &password,
            &database,
        )
        .await
        .expect("connect");
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&mut own)
            .await
            .expect("users");
        assert_eq!(users, 1, "{step}");
    }
}

#[tokio::test]
async fn concurrent_creates_of_one_slug_make_one_tenant() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;

    let attempts = (0..20).map(|_| app.create_tenant(&token, "contested"));
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|(status, _)| *status == 201).count();
    let conflicts: Vec<&Value> = results
        .iter()
        .filter(|(status, _)| *status == 409)
        .map(|(_, body)| body)
        .collect();
    assert_eq!((created, conflicts.len()), (1, 19), "{results:?}");
    for body in conflicts {
        assert_eq!(body["code"], "tenant_exists");
    }
    assert_eq!(tenant_databases(&app.postgres.server).await.len(), 1);

    // With an Idempotency-Key, the retries are replays of the one creation.
    let send = || {
        app.client
            .post(app.url("/v1/tenants"))
            .bearer_auth(&token)
            .header("idempotency-key", "create-replayed-once")
            .json(&json!({ "slug": "replayed", "name": "Replayed", "plan": "standard",
                           "admin_email": "owner@replayed.example", "admin_password": "a long enough password" }))
            .send()
    };
    let responses = futures::future::join_all((0..10).map(|_| send())).await;
    let mut ids = Vec::new();
    let mut replays = 0;
    for response in responses {
        let response = response.expect("send");
        assert_eq!(response.status(), 201);
        replays += usize::from(response.headers().contains_key("idempotent-replayed"));
        let body: Value = response.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one tenant");
    assert_eq!(replays, 9);
    assert_eq!(tenant_databases(&app.postgres.server).await.len(), 2);
    // The same key for a different request is refused.
    let (status, body) = {
        let response = app
            .client
            .post(app.url("/v1/tenants"))
            .bearer_auth(&token)
            .header("idempotency-key", "create-replayed-once")
            .json(&json!({ "slug": "different", "name": "Different", "plan": "standard",
                           "admin_email": "owner@different.example", "admin_password": "a long enough password" }))
            .send()
            .await
            .expect("send");
        (
            response.status().as_u16(),
            response.json::<Value>().await.expect("json"),
        )
    };
    assert_problem(status, &body, 422, "idempotency_key_reused");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_ddl() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    for slug in [
        "Acme",
        "1acme",
        "ab",
        "acme-",
        &"a".repeat(41),
        "a\"; drop database x; --",
        "аcme",
        "acme\u{200b}corp",
        "acme corp",
        "",
    ] {
        let (status, body) = app.create_tenant(&token, slug).await;
        assert_problem(status, &body, 422, "validation_failed");
        assert_eq!(body["errors"][0]["field"], "slug", "{slug:?}: {body}");
    }
    let valid = |change: &dyn Fn(&mut Value)| {
        let mut body = json!({ "slug": "valid-slug", "name": "Valid", "plan": "standard",
                               "admin_email": "owner@valid.example", "admin_password": "a long enough password" });
        change(&mut body);
        body
    };
    for (body, code) in [
        (
            valid(&|b| b["plan"] = json!("platinum")),
            "validation_failed",
        ),
        (
            valid(&|b| b["admin_password"] = json!("short")),
            "validation_failed",
        ),
        (
            valid(&|b| b["admin_email"] = json!("nobody")),
            "validation_failed",
        ),
        (valid(&|b| b["name"] = json!("")), "validation_failed"),
        (valid(&|b| b["extra"] = json!(1)), "invalid_body"),
        (valid(&|b| b["slug"] = json!(42)), "invalid_body"),
    ] {
        let (status, response) = app
            .call(
                Method::POST,
                "/v1/tenants",
                Some(&token),
                Some(body.clone()),
            )
            .await;
        assert_problem(status, &response, 422, code);
    }
    let mut catalog = connect(&app.database_url).await;
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut catalog)
        .await
        .expect("count");
    assert_eq!(tenants, 0, "nothing recorded");
    assert!(
        tenant_databases(&app.postgres.server).await.is_empty(),
        "no DDL ran"
    );
    assert!(tenant_roles(&app.postgres.server).await.is_empty());
    let (status, body) = app
        .call(Method::GET, "/v1/tenants/Not-A-Slug", Some(&token), None)
        .await;
    assert_problem(status, &body, 404, "tenant_not_found");
}

#[tokio::test]
async fn lifecycle_plan_changes_and_deletion() {
    let app = ControlPlane::start_with(&[("TENANCY_DELETE_GRACE", "0s")]).await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    let (_, acme) = app.create_tenant(&token, "acme").await;
    let role = role_of(&acme);
    let connection_limit = || async {
        let mut admin = connect(&app.postgres.server.superuser_url("postgres")).await;
        sqlx::query_scalar::<_, i32>("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&mut admin)
            .await
            .expect("role")
    };
    assert_eq!(
        connection_limit().await,
        11,
        "the standard plan's max_connections, and one for the router's events listener"
    );
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/tenants/acme",
            Some(&token),
            Some(json!({ "plan": "enterprise", "name": "Acme Corp" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["plan"].as_str(), body["name"].as_str()),
        (Some("enterprise"), Some("Acme Corp"))
    );
    assert_eq!(
        connection_limit().await,
        41,
        "the new plan's limit is on the role at once"
    );

    let post = |path: &'static str| app.call(Method::POST, path, Some(&token), None);
    let (status, body) = post("/v1/tenants/acme/resume").await;
    assert_problem(status, &body, 409, "invalid_transition");
    let (status, body) = post("/v1/tenants/acme/suspend").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("suspended")));
    let (status, body) = post("/v1/tenants/acme/resume").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")));

    // No backups configured: a tenant with a database is not dropped without a final
    // backup, unless the admin waives it explicitly.
    let (status, body) = app
        .delete_tenant(&token, "acme", FinalBackup::Required)
        .await;
    assert_problem(status, &body, 409, "final_backup_unavailable");
    assert_eq!(tenant_databases(&app.postgres.server).await.len(), 1);
    let body = app
        .delete_tenant_now(&token, "acme", FinalBackup::Skip)
        .await;
    assert_eq!(body["final_backup_waived"], true, "{body}");
    assert!(tenant_databases(&app.postgres.server).await.is_empty());
    assert!(tenant_roles(&app.postgres.server).await.is_empty());
    let (status, body) = post("/v1/tenants/acme/suspend").await;
    assert_problem(status, &body, 404, "tenant_not_found");

    // The slug can be used again; the new tenant is another tenant.
    let (status, again) = app.create_tenant(&token, "acme").await;
    assert_eq!(status, 201);
    assert_ne!(again["id"], acme["id"]);

    let (_, log) = app
        .call(Method::GET, "/v1/audit-log?limit=500", Some(&token), None)
        .await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    for action in [
        "tenant.create",
        "tenant.update",
        "tenant.suspend",
        "tenant.resume",
        "tenant.delete",
        "tenant.drop",
        "server.create",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
}

#[tokio::test]
async fn an_expired_trial_is_suspended_by_the_background_job() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    let (status, trial) = app
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&token),
            Some(json!({ "slug": "trying", "name": "Trying", "plan": "trial",
            "admin_email": "owner@trying.example", "admin_password": "a long enough password" })),
        )
        .await;
    assert_eq!(status, 201);
    let ends: chrono::DateTime<chrono::Utc> = trial["trial_ends_at"]
        .as_str()
        .expect("trial end")
        .parse()
        .expect("time");
    let days = (ends - chrono::Utc::now()).num_days();
    assert!(
        (13..=14).contains(&days),
        "the trial plan's 14 days: {days}"
    );
    let mut catalog = connect(&app.database_url).await;
    sqlx::query(
        "UPDATE tenants SET trial_ends_at = now() - interval '1 minute' WHERE slug = 'trying'",
    )
    .execute(&mut catalog)
    .await
    .expect("expire");
    eventually(Duration::from_secs(10), "suspended", || async {
        let (_, tenant) = app.tenant(&token, "trying").await;
        if tenant["status"] == "suspended" {
            Ok(())
        } else {
            Err(tenant.to_string())
        }
    })
    .await;
}
