//! Tenant provisioning through the real control-plane binary, on real PostgreSQL servers:
//! placement, isolation, crash safety, concurrency and bad input.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::Connection;
use tenancy_infra::EmbeddedPostgres;
use tenancy_tests::{ControlPlane, FinalBackup, TestPostgres, assert_problem, connect, eventually};

mod lifecycle;
mod warm;

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
    let (_, detail) = app.tenant(&token, "acme").await;
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
