//! Sets of tenants the jobs and the sweep work through.

use super::*;

/// Tenants in `status`, oldest first (for the background jobs).
pub async fn ids_with_status(pool: &PgPool, status: Status) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE status = $1 ORDER BY created_at")
        .bind(status)
        .fetch_all(pool)
        .await
}

/// Tenants whose deletion grace period is over.
pub async fn due_for_drop(pool: &PgPool) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE status = 'deleting' AND delete_after <= now()")
        .fetch_all(pool)
        .await
}

/// Active trial tenants whose trial has ended.
pub async fn expired_trials(pool: &PgPool) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE status = 'active' AND trial_ends_at <= now()")
        .fetch_all(pool)
        .await
}

/// Every tenant id the catalog knows on a server, deleted ones excluded (their objects are
/// gone or going).
pub async fn known_on_server(
    pool: &PgPool,
    server_id: ServerId,
) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE server_id = $1 AND status <> 'deleted'")
        .bind(server_id)
        .fetch_all(pool)
        .await
}

/// Every tenant the catalog knows, deleted ones excluded (their objects are gone or going).
pub async fn known_ids(pool: &PgPool) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE status <> 'deleted'")
        .fetch_all(pool)
        .await
}

/// Every database name the catalog accounts for, on any server: the live tenants'
/// databases, the warm pool, restores in progress, and databases kept after a restore.
pub async fn known_databases(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT database_name FROM tenants WHERE status <> 'deleted' AND database_name IS NOT NULL \
         UNION SELECT name FROM warm_databases \
         UNION SELECT database_name FROM restores WHERE status = 'running' \
         UNION SELECT kept_database FROM restores \
           WHERE kept_database IS NOT NULL AND kept_dropped_at IS NULL \
         UNION SELECT previous_database FROM restores \
           WHERE previous_database IS NOT NULL AND kept_database IS NOT NULL AND kept_dropped_at IS NULL",
    )
    .fetch_all(pool)
    .await
}

/// The databases the live tenants of a server use.
pub async fn databases_on_server(
    pool: &PgPool,
    server_id: ServerId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT database_name FROM tenants WHERE server_id = $1 AND status <> 'deleted' \
         AND database_name IS NOT NULL",
    )
    .bind(server_id)
    .fetch_all(pool)
    .await
}

/// Live tenants on a plan, with their server (to re-apply the plan's limits).
pub async fn on_plan(
    executor: impl PgExecutor<'_>,
    plan: &str,
) -> Result<Vec<(TenantId, ServerId)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, server_id FROM tenants WHERE plan = $1 AND server_id IS NOT NULL \
         AND status IN ('active', 'suspended')",
    )
    .bind(plan)
    .fetch_all(executor)
    .await
}
