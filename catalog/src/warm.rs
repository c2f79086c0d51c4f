//! The warm pool: databases cloned from a server's template ahead of demand. A row is
//! written before its database is created, so the catalog knows every database.

use sqlx::{PgExecutor, PgPool};
use tenancy_core::ServerId;

/// Records a warm database about to be created.
pub async fn announce(
    executor: impl PgExecutor<'_>,
    name: &str,
    server_id: ServerId,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO warm_databases (name, server_id) VALUES ($1, $2)")
        .bind(name)
        .bind(server_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Marks a warm database created and cloned from the template at `schema_version`.
pub async fn mark_ready(
    executor: impl PgExecutor<'_>,
    name: &str,
    schema_version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE warm_databases SET ready = true, schema_version = $2 WHERE name = $1")
        .bind(name)
        .bind(schema_version)
        .execute(executor)
        .await?;
    Ok(())
}

pub async fn forget(executor: impl PgExecutor<'_>, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM warm_databases WHERE name = $1")
        .bind(name)
        .execute(executor)
        .await?;
    Ok(())
}

/// Locks the oldest ready warm database on a server at this schema version, skipping those
/// another transaction holds. Keep the transaction open until the database is renamed.
pub async fn lock_one(
    executor: impl PgExecutor<'_>,
    server_id: ServerId,
    schema_version: i64,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT name FROM warm_databases WHERE server_id = $1 AND ready AND schema_version = $2 \
         ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .bind(server_id)
    .bind(schema_version)
    .fetch_optional(executor)
    .await
}

/// Warm databases of a server, ready or being made.
pub async fn count(pool: &PgPool, server_id: ServerId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM warm_databases WHERE server_id = $1")
        .bind(server_id)
        .fetch_one(pool)
        .await
}

/// Every warm database name the catalog knows on a server.
pub async fn names(pool: &PgPool, server_id: ServerId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM warm_databases WHERE server_id = $1")
        .bind(server_id)
        .fetch_all(pool)
        .await
}

/// Warm rows that never became ready (their maker died); the caller drops the databases.
pub async fn stale(pool: &PgPool, server_id: ServerId) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT name FROM warm_databases WHERE server_id = $1 AND NOT ready \
         AND created_at < now() - interval '10 minutes'",
    )
    .bind(server_id)
    .fetch_all(pool)
    .await
}

/// Locks a ready warm database for a migration, unless a provisioning holds it. Keep the
/// transaction open until the migration is done: nobody adopts it meanwhile.
pub async fn lock_for_migration(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<Option<i64>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT schema_version FROM warm_databases WHERE name = $1 AND ready FOR UPDATE SKIP LOCKED",
    )
    .bind(name)
    .fetch_optional(executor)
    .await
}

pub async fn set_schema_version(
    executor: impl PgExecutor<'_>,
    name: &str,
    schema_version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE warm_databases SET schema_version = $2 WHERE name = $1")
        .bind(name)
        .bind(schema_version)
        .execute(executor)
        .await?;
    Ok(())
}
