//! The warm pool: new tenants take a pre-cloned database and the pool refills.

use super::*;

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
    let what = format!("{count} warm databases");
    eventually(Duration::from_secs(20), &what, || async {
        let warm = warm_databases(server).await;
        if warm.len() == count {
            Ok(warm)
        } else {
            Err(format!("{} databases", warm.len()))
        }
    })
    .await
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
