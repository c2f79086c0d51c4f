//! Built-in steps that remove or replace something, run on a database at the first schema
//! with data in it: they move what they must, refuse (leaving the database whole) when
//! they would lose data, and never give a number twice.

use super::*;

/// The steps in `names` of the built-in set, loaded as refinery migrations.
fn built_in(names: &[&str]) -> Vec<refinery::Migration> {
    let dir = tenancy_tests::temp_dir();
    for (name, sql) in tenancy_tests::built_in_tenant_steps() {
        if names.is_empty() || names.iter().any(|wanted| name.starts_with(wanted)) {
            std::fs::write(dir.path().join(name), sql).expect("write a step");
        }
    }
    refinery::load_sql_migrations(dir.path()).expect("load the steps")
}

/// Applies `steps` as the platform does: all pending ones in one transaction.
async fn migrate(
    client: &mut tokio_postgres::Client,
    steps: &[refinery::Migration],
) -> Result<refinery::Report, refinery::Error> {
    let mut runner = refinery::Runner::new(steps)
        .set_abort_divergent(true)
        .set_grouped(true);
    runner.set_migration_table_name("refinery_schema_history");
    runner.run_async(client).await
}

#[tokio::test]
async fn upgrading_a_first_schema_database_loses_nothing_and_refuses_rather_than_drop_data() {
    let postgres = TestPostgres::start();
    let url = postgres.create_database("upgrade").await;
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute("CREATE SCHEMA app; SET search_path = app")
        .await
        .expect("the schema");
    migrate(&mut client, &built_in(&["V1__"]))
        .await
        .expect("the first schema");
    client
        .batch_execute(
            "INSERT INTO users (email, password_hash, failed_logins, first_failed_at, locked_until) \
               VALUES ('locked@example.com', 'x', 5, now(), now() + interval '1 hour'); \
             INSERT INTO refresh_tokens (user_id, token_hash, expires_at) \
               SELECT id, sha256('t'), now() + interval '1 day' FROM users; \
             INSERT INTO suppliers (code, name) VALUES ('S-1', 'Supplier'); \
             INSERT INTO purchase_orders (supplier_id) SELECT id FROM suppliers; \
             INSERT INTO purchase_orders (supplier_id) SELECT id FROM suppliers; \
             DELETE FROM purchase_orders WHERE number = 'PO-000002';",
        )
        .await
        .expect("first-schema data");

    // A refresh token in the old table: the upgrade refuses and changes nothing at all.
    // (The platform installs the extensions later steps use before it migrates.)
    client
        .batch_execute("CREATE EXTENSION pg_trgm WITH SCHEMA app")
        .await
        .expect("pg_trgm");
    let all = built_in(&[]);
    let error = migrate(&mut client, &all).await.expect_err("refused");
    assert!(
        format!("{error:?}").contains("refresh_tokens holds rows"),
        "{error:?}"
    );
    let version: i32 = client
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await
        .expect("history")
        .get(0);
    assert_eq!(version, 1, "still the first schema");
    let kept: i64 = client
        .query_one("SELECT count(*) FROM refresh_tokens", &[])
        .await
        .expect("the old table is there")
        .get(0);
    assert_eq!(kept, 1);
    let locked: i32 = client
        .query_one("SELECT failed_logins FROM users", &[])
        .await
        .expect("the old columns are there")
        .get(0);
    assert_eq!(locked, 5);

    // Emptied, it upgrades; the lock carries over and order numbers go on from the
    // highest ever given (2, whose order was removed), not from the highest left.
    client
        .batch_execute("DELETE FROM refresh_tokens")
        .await
        .expect("empty it");
    migrate(&mut client, &all).await.expect("the upgrade");
    let row = client
        .query_one(
            "SELECT failures, locked_until > now() FROM login_failures \
             WHERE email = 'locked@example.com'",
            &[],
        )
        .await
        .expect("the lock moved");
    assert_eq!((row.get::<_, i32>(0), row.get::<_, bool>(1)), (5, true));
    // An order takes its number when its transaction commits (V6): one rolled back spends
    // none, and the next goes on past the highest number ever given (V4).
    let transaction = client.transaction().await.expect("begin");
    let pending: String = transaction
        .query_one(
            "INSERT INTO purchase_orders (supplier_id) SELECT id FROM suppliers RETURNING number",
            &[],
        )
        .await
        .expect("an order")
        .get(0);
    assert!(pending.starts_with("pending-"), "{pending}");
    transaction.rollback().await.expect("roll back");
    let id: uuid::Uuid = client
        .query_one(
            "INSERT INTO purchase_orders (supplier_id) SELECT id FROM suppliers RETURNING id",
            &[],
        )
        .await
        .expect("a new order")
        .get(0);
    let number: String = client
        .query_one("SELECT number FROM purchase_orders WHERE id = $1", &[&id])
        .await
        .expect("its number")
        .get(0);
    assert_eq!(number, "PO-000003");
}
