//! Provisioning progress and lifecycle writes: the steps, status changes, restores, renames and plan changes.

use super::*;

/// What provisioning needs that the API never shows.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProvisioningState {
    pub id: TenantId,
    pub status: Status,
    pub server_id: Option<ServerId>,
    pub provisioning_step: Option<String>,
    pub app_password: Option<Vec<u8>>,
    pub first_admin_email: Option<String>,
    pub first_admin_password_hash: Option<String>,
    pub max_connections: i32,
    pub statement_timeout_ms: i32,
}

pub async fn provisioning_state(
    executor: impl PgExecutor<'_>,
    id: TenantId,
) -> Result<Option<ProvisioningState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.status, t.server_id, t.provisioning_step, t.app_password, t.first_admin_email, \
           t.first_admin_password_hash, p.max_connections, p.statement_timeout_ms \
         FROM tenants t JOIN plans p ON p.name = t.plan WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(executor)
    .await
}

pub async fn set_step(
    executor: impl PgExecutor<'_>,
    id: TenantId,
    step: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET provisioning_step = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(step)
        .execute(executor)
        .await?;
    Ok(())
}

/// Provisioning finished: the tenant is routable.
pub async fn mark_active(
    executor: impl PgExecutor<'_>,
    id: TenantId,
    schema_version: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tenants SET status = 'active', provisioning_step = NULL, failure_reason = NULL, \
           schema_version = $2, first_admin_password_hash = NULL, updated_at = now(), \
           users_count = 1, users_counted_at = now() \
         WHERE id = $1 AND status = 'provisioning'",
    )
    .bind(id)
    .bind(schema_version)
    .execute(executor)
    .await?;
    Ok(())
}

/// Provisioning failed and what it had made was removed: retryable from the start.
pub async fn mark_failed(
    executor: impl PgExecutor<'_>,
    id: TenantId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tenants SET status = 'failed', provisioning_step = 'reserved', failure_reason = $2, \
           updated_at = now() WHERE id = $1 AND status = 'provisioning'",
    )
    .bind(id)
    .bind(reason)
    .execute(executor)
    .await?;
    Ok(())
}

/// `active -> restoring` (only from `active`); false if the tenant was not active.
pub async fn mark_restoring(
    executor: impl PgExecutor<'_>,
    id: TenantId,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET status = 'restoring', updated_at = now() WHERE id = $1 AND status = 'active'",
    )
    .bind(id)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `restoring -> active`: the restore ended without a switch (failed, or its process died).
pub async fn end_restoring(executor: impl PgExecutor<'_>, id: TenantId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tenants SET status = 'active', updated_at = now() WHERE id = $1 AND status = 'restoring'",
    )
    .bind(id)
    .execute(executor)
    .await?;
    Ok(())
}

/// Records that an operator waived the tenant's final backup.
pub async fn waive_final_backup(
    executor: impl PgExecutor<'_>,
    id: TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE tenants SET final_backup_waived = true WHERE id = $1")
        .bind(id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Moves a tenant along its lifecycle; the caller checked [`Status::can_become`].
pub async fn set_status(
    executor: impl PgExecutor<'_>,
    id: TenantId,
    status: Status,
    delete_after: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tenants SET status = $2, updated_at = now(), \
           suspended_at = CASE WHEN $2 = 'suspended' THEN now() WHEN $2 = 'active' THEN NULL ELSE suspended_at END, \
           delete_after = CASE WHEN $2 = 'deleting' THEN $3 ELSE delete_after END, \
           deleted_at = CASE WHEN $2 = 'deleted' THEN now() ELSE deleted_at END, \
           failure_reason = CASE WHEN $2 = 'provisioning' THEN NULL ELSE failure_reason END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(delete_after)
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn rename_and_replan(
    executor: impl PgExecutor<'_>,
    id: TenantId,
    name: &str,
    plan: &str,
) -> Result<(), sqlx::Error> {
    // A new plan starts its own trial, or ends the trial (a tenant on a plan without
    // `trial_days` has no trial end: moved off `trial`, it is never suspended for it).
    sqlx::query(
        "UPDATE tenants t SET name = $2, plan = $3, updated_at = now(), \
           trial_ends_at = CASE WHEN t.plan = $3 THEN t.trial_ends_at \
             ELSE (SELECT CASE WHEN p.trial_days IS NULL THEN NULL \
                   ELSE now() + make_interval(days => p.trial_days) END \
                   FROM plans p WHERE p.name = $3) END \
         WHERE t.id = $1",
    )
    .bind(id)
    .bind(name)
    .bind(plan)
    .execute(executor)
    .await?;
    Ok(())
}

/// A `failed` tenant provisioned again with a new request's body: name, plan (and its
/// trial), first admin. Its objects were dropped when it failed, so it starts over.
pub async fn reset_failed(
    executor: impl PgExecutor<'_>,
    id: TenantId,
    name: &str,
    plan: &str,
    first_admin_email: &str,
    first_admin_password_hash: &str,
    trial_days: Option<i32>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET status = 'provisioning', provisioning_step = 'reserved', \
           failure_reason = NULL, name = $2, plan = $3, first_admin_email = $4, \
           first_admin_password_hash = $5, \
           trial_ends_at = CASE WHEN $6::int IS NULL THEN NULL ELSE now() + make_interval(days => $6::int) END, \
           updated_at = now() \
         WHERE id = $1 AND status = 'failed'",
    )
    .bind(id)
    .bind(name)
    .bind(plan)
    .bind(first_admin_email)
    .bind(first_admin_password_hash)
    .bind(trial_days)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}
