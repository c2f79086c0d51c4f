//! Tenant provisioning through the real control-plane binary, on real PostgreSQL servers:
//! placement, isolation, crash safety, concurrency and bad input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::Connection;
use tenancy_infra::EmbeddedPostgres;
use tenancy_tests::{ControlPlane, TestPostgres, assert_problem, connect};

/// Tenant databases on a server.
async fn tenant_databases(server: &EmbeddedPostgres) -> Vec<String> {
    let mut connection = connect(&server.superuser_url("postgres")).await;
    sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname ~ '^(t_|tenancy_warm_)' ORDER BY 1",
    )
    .fetch_all(&mut connection)
    .await
    .expect("list databases")
}

/// Tenant roles on a server.
async fn tenant_roles(server: &EmbeddedPostgres) -> Vec<String> {
    let mut connection = connect(&server.superuser_url("postgres")).await;
    sqlx::query_scalar("SELECT rolname FROM pg_roles WHERE rolname ~ '^t_' ORDER BY 1")
        .fetch_all(&mut connection)
        .await
        .expect("list roles")
}

/// The tenant role's password, opened from the catalog with the catalog key.
async fn role_password(app: &ControlPlane, tenant_id: &str) -> String {
    let mut catalog = connect(&app.database_url).await;
    let id: uuid::Uuid = tenant_id.parse().expect("uuid");
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT app_password FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_one(&mut catalog)
        .await
        .expect("sealed password");
    app.sealer
        .open_secret(&format!("tenant:{id}:app_password"), &sealed)
        .expect("open")
        .expose_secret()
        .to_owned()
}

fn role_of(tenant: &Value) -> String {
    format!(
        "t_{}_app",
        tenant["id"].as_str().expect("id").replace('-', "")
    )
}

async fn connect_as(
    server: &EmbeddedPostgres,
    role: &str,
    password: &str,
    database: &str,
) -> Result<sqlx::PgConnection, sqlx::Error> {
    let url = format!(
        "postgres://{role}:{password}@127.0.0.1:{}/{database}",
        server.port()
    );
    sqlx::PgConnection::connect(&url).await
}

fn sql_state(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .map(|code| code.into_owned())
}

#[tokio::test]
async fn a_tenant_gets_its_own_database_on_its_server_and_postgres_enforces_isolation() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    let second = TestPostgres::start_distinct();
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    app.add_server(&token, "second", &second.server, 50).await;

    let (status, acme) = app.create_tenant(&token, "acme").await;
    assert_eq!(status, 201, "{acme}");
    assert_eq!(acme["status"], "active");
    assert_eq!(
        acme["server"], "main",
        "ties go to the first server by name"
    );
    let (_, globex) = app.create_tenant(&token, "globex").await;
    assert_eq!(globex["server"], "second", "the emptier server");
    let (_, initech) = app.create_tenant(&token, "initech").await;
    assert_eq!(initech["server"], "main");

    // Each database exists on its server only; names reveal nothing about the customer.
    let main_databases = tenant_databases(&app.postgres.server).await;
    let second_databases = tenant_databases(&second.server).await;
    let database = |tenant: &Value| {
        tenant["database_name"]
            .as_str()
            .expect("database")
            .to_owned()
    };
    assert_eq!(main_databases.len(), 2);
    assert!(
        main_databases.contains(&database(&acme)) && main_databases.contains(&database(&initech))
    );
    assert_eq!(second_databases, vec![database(&globex)]);
    for name in main_databases.iter().chain(&second_databases) {
        assert!(!name.contains("acme") && !name.contains("globex") && !name.contains("initech"));
    }

    // The tenant role gets into its own database, where the first admin is.
    let password = role_password(&app, acme["id"].as_str().expect("id")).await;
    let mut own = connect_as(
        &app.postgres.server,
        &role_of(&acme),
        &password,
        &database(&acme),
    )
    .await
    .expect("the tenant role connects to its own database");
    let admin: String = sqlx::query_scalar("SELECT u.email FROM users u JOIN user_roles ur ON ur.user_id = u.id JOIN roles r ON r.id = ur.role_id WHERE r.name = 'admin'")
        .fetch_one(&mut own)
        .await
        .expect("first admin");
    assert_eq!(admin, "owner@acme.example");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&mut own)
        .await
        .expect("hash");
    assert!(hash.starts_with("$argon2id$"));

    // It cannot do DDL, create roles or run programs.
    for statement in [
        "CREATE TABLE app.intruder (id int)",
        "CREATE TABLE public.intruder (id int)",
        "CREATE ROLE intruder",
        "COPY (SELECT 1) TO PROGRAM 'id'",
    ] {
        let error = sqlx::query(statement)
            .execute(&mut own)
            .await
            .expect_err(statement);
        assert_eq!(
            sql_state(&error).as_deref(),
            Some("42501"),
            "{statement}: {error}"
        );
    }
    // It cannot reach another tenant's database on the same server, nor the catalog.
    for other in [
        database(&initech),
        "catalog".to_owned(),
        "postgres".to_owned(),
    ] {
        let error = connect_as(&app.postgres.server, &role_of(&acme), &password, &other)
            .await
            .expect_err(&other);
        assert_eq!(
            sql_state(&error).as_deref(),
            Some("42501"),
            "{other}: {error}"
        );
    }
    // The role does not exist on the other server at all.
    assert!(
        connect_as(
            &second.server,
            &role_of(&acme),
            &password,
            &database(&globex)
        )
        .await
        .is_err()
    );

    // The API never shows a password.
    let (_, detail) = app
        .call(Method::GET, "/v1/tenants/acme", Some(&token), None)
        .await;
    assert!(!detail.to_string().contains(&password));
    let (_, servers) = app
        .call(Method::GET, "/v1/servers", Some(&token), None)
        .await;
    assert!(
        !servers
            .to_string()
            .contains(app.postgres.server.superuser_password())
    );
    assert_eq!(servers["items"][0]["tenants"], 2);
}

#[tokio::test]
async fn placement_spreads_tenants_over_servers_by_headroom() {
    let app = ControlPlane::start().await;
    let token = app.admin_token().await;
    let second = TestPostgres::start_distinct();
    app.add_server(&token, "main", &app.postgres.server, 20)
        .await;
    app.add_server(&token, "second", &second.server, 20).await;
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..10 {
        let (status, tenant) = app
            .create_tenant(&token, &format!("tenant-{index:02}"))
            .await;
        assert_eq!(status, 201, "{tenant}");
        *placed
            .entry(tenant["server"].as_str().expect("server").to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        placed,
        BTreeMap::from([("main".to_owned(), 5), ("second".to_owned(), 5)])
    );
    assert_eq!(tenant_databases(&app.postgres.server).await.len(), 5);
    assert_eq!(tenant_databases(&second.server).await.len(), 5);

    // A full server takes no more; when all are full, the answer says so.
    let third = TestPostgres::start_distinct();
    app.add_server(&token, "small", &third.server, 1).await;
    let (_, tenant) = app.create_tenant(&token, "tenant-10").await;
    assert_eq!(
        tenant["server"], "main",
        "most free slots: main and second have 15, small 1"
    );
    let (status, body) = app
        .call(Method::GET, "/v1/servers", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let counts: Vec<i64> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|server| server["tenants"].as_i64().expect("count"))
        .collect();
    assert_eq!(counts, vec![6, 5, 0]);
}

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
        let deadline = Instant::now() + Duration::from_secs(20);
        let tenant = loop {
            let (_, tenant) = app
                .call(
                    Method::GET,
                    &format!("/v1/tenants/{slug}"),
                    Some(&token),
                    None,
                )
                .await;
            if tenant["status"] == "active" {
                break tenant;
            }
            assert!(
                Instant::now() < deadline,
                "not finished after a restart ({step}): {tenant}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
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
        10,
        "the standard plan's max_connections"
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
        40,
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
        .call(Method::DELETE, "/v1/tenants/acme", Some(&token), None)
        .await;
    assert_problem(status, &body, 409, "final_backup_unavailable");
    assert_eq!(tenant_databases(&app.postgres.server).await.len(), 1);
    let (status, body) = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme?final_backup=skip",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("deleted")),
        "{body}"
    );
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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, tenant) = app
            .call(Method::GET, "/v1/tenants/trying", Some(&token), None)
            .await;
        if tenant["status"] == "suspended" {
            break;
        }
        assert!(Instant::now() < deadline, "not suspended: {tenant}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Warm databases on a server: name -> oid.
async fn warm_databases(server: &EmbeddedPostgres) -> BTreeMap<String, u32> {
    let mut connection = connect(&server.superuser_url("postgres")).await;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT datname, oid::bigint FROM pg_database WHERE datname LIKE 'tenancy\\_warm\\_%'",
    )
    .fetch_all(&mut connection)
    .await
    .expect("list warm databases");
    rows.into_iter()
        .map(|(name, oid)| (name, u32::try_from(oid).expect("oid")))
        .collect()
}

async fn wait_for_warm(server: &EmbeddedPostgres, count: usize) -> BTreeMap<String, u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let warm = warm_databases(server).await;
        if warm.len() == count {
            return warm;
        }
        assert!(
            Instant::now() < deadline,
            "the warm pool has {} databases, not {count}",
            warm.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn new_tenants_take_a_warm_database_and_the_pool_refills() {
    let app = ControlPlane::start_with(&[("TENANCY_WARM_POOL_SIZE", "3")]).await;
    let token = app.admin_token().await;
    app.add_server(&token, "main", &app.postgres.server, 50)
        .await;
    let warm = wait_for_warm(&app.postgres.server, 3).await;

    let (status, tenant) = app.create_tenant(&token, "warm-start").await;
    assert_eq!(status, 201, "{tenant}");
    let database = tenant["database_name"]
        .as_str()
        .expect("database")
        .to_owned();
    let mut admin = connect(&app.postgres.server.superuser_url("postgres")).await;
    let oid: i64 = sqlx::query_scalar("SELECT oid::bigint FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .expect("the tenant database");
    assert!(
        warm.values().any(|warm_oid| i64::from(*warm_oid) == oid),
        "the tenant took a warm database (renamed, same oid)"
    );

    // It is a full tenant database: the role gets in, the first admin is there, and no
    // other role can connect.
    let password = role_password(&app, tenant["id"].as_str().expect("id")).await;
    let mut own = connect_as(
        &app.postgres.server,
        &role_of(&tenant),
        &password,
        &database,
    )
    .await
    .expect("connect");
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut own)
        .await
        .expect("users");
    assert_eq!(admins, 1);
    let public_connect: bool =
        sqlx::query_scalar("SELECT has_database_privilege('public', $1, 'CONNECT')")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .expect("privilege");
    assert!(!public_connect);

    let refilled = wait_for_warm(&app.postgres.server, 3).await;
    assert_eq!(
        refilled
            .values()
            .filter(|oid| warm.values().any(|old| old == *oid))
            .count(),
        2,
        "two old, one new"
    );
}
