//! Data safety with the real binaries on real PostgreSQL servers: the platform
//! drops only what this installation provably created, never at once, and nothing of a
//! live tenant; a cluster is registered once; a restored catalog destroys nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use tenancy_tests::{ControlPlane, FinalBackup, assert_problem, connect, eventually};

mod jobs;
mod sweep;

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
