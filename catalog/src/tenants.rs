//! Tenants: their lifecycle, placement and provisioning progress.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tenancy_core::{AdminId, ServerId, TenantId};
use uuid::Uuid;

/// A tenant's status:
/// `provisioning -> active <-> suspended -> deleting -> deleted`, `failed` when
/// provisioning failed (retryable), and `active -> restoring -> active` while a backup is
/// restored over the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    Provisioning,
    Active,
    Suspended,
    Restoring,
    Deleting,
    Deleted,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Restoring => "restoring",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            "restoring" => Self::Restoring,
            "deleting" => Self::Deleting,
            "deleted" => Self::Deleted,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the lifecycle allows going from `self` to `next`.
    pub fn can_become(self, next: Self) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Provisioning, Active)
                | (Provisioning, Failed)
                | (Failed, Provisioning)
                | (Active, Suspended)
                | (Suspended, Active)
                | (Active, Restoring)
                | (Restoring, Active)
                | (Active | Suspended | Failed, Deleting)
                | (Deleting, Deleted)
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A tenant row. The sealed role password and the first admin's hash are not part of it.
/// It is not an API response: the control plane's wire types are made from it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: Status,
    pub server_id: Option<ServerId>,
    pub server: Option<String>,
    pub database_name: Option<String>,
    pub schema_version: Option<i64>,
    pub provisioning_step: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub delete_after: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// An operator deleted it without a final backup.
    pub final_backup_waived: bool,
}

const SELECT: &str = "SELECT t.id, t.slug, t.name, t.plan, t.status, t.server_id, s.name AS server, \
    t.database_name, t.schema_version, t.provisioning_step, t.failure_reason, t.created_at, \
    t.updated_at, t.trial_ends_at, t.suspended_at, t.delete_after, t.deleted_at, \
    t.final_backup_waived \
    FROM tenants t LEFT JOIN database_servers s ON s.id = t.server_id";

/// The sealing context of a tenant role's password.
pub fn password_context(id: TenantId) -> String {
    format!("tenant:{id}:app_password")
}

pub struct Reservation<'a> {
    pub id: TenantId,
    pub slug: &'a str,
    pub name: &'a str,
    pub plan: &'a str,
    pub server_id: ServerId,
    pub database_name: &'a str,
    pub app_role: &'a str,
    pub sealed_password: &'a [u8],
    pub first_admin_email: &'a str,
    pub first_admin_password_hash: &'a str,
    pub trial_days: Option<i32>,
}

/// Records a tenant before any of its database objects exist. A live tenant with the same
/// slug fails on `tenants_slug_live_key`.
pub async fn reserve(
    executor: impl PgExecutor<'_>,
    reservation: &Reservation<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, plan, status, server_id, database_name, app_role, \
           app_password, provisioning_step, first_admin_email, first_admin_password_hash, trial_ends_at) \
         VALUES ($1, $2, $3, $4, 'provisioning', $5, $6, $7, $8, 'reserved', $9, $10, \
           CASE WHEN $11::int IS NULL THEN NULL ELSE now() + make_interval(days => $11::int) END)",
    )
    .bind(reservation.id)
    .bind(reservation.slug)
    .bind(reservation.name)
    .bind(reservation.plan)
    .bind(reservation.server_id)
    .bind(reservation.database_name)
    .bind(reservation.app_role)
    .bind(reservation.sealed_password)
    .bind(reservation.first_admin_email)
    .bind(reservation.first_admin_password_hash)
    .bind(reservation.trial_days)
    .execute(executor)
    .await?;
    Ok(())
}

/// A tenant database adopted back into the catalog.
pub struct Adopted<'a> {
    pub id: TenantId,
    pub slug: &'a str,
    pub name: &'a str,
    pub plan: &'a str,
    pub server_id: ServerId,
    pub database_name: &'a str,
    pub app_role: &'a str,
    pub sealed_password: &'a [u8],
    pub schema_version: Option<i64>,
}

/// Records an adopted tenant, `active` at once (its database and role are ready). A live
/// tenant with the same slug fails on `tenants_slug_live_key`.
pub async fn insert_adopted(
    executor: impl PgExecutor<'_>,
    adopted: &Adopted<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, plan, status, server_id, database_name, app_role, \
           app_password, schema_version) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9)",
    )
    .bind(adopted.id)
    .bind(adopted.slug)
    .bind(adopted.name)
    .bind(adopted.plan)
    .bind(adopted.server_id)
    .bind(adopted.database_name)
    .bind(adopted.app_role)
    .bind(adopted.sealed_password)
    .bind(adopted.schema_version)
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn get(
    executor: impl PgExecutor<'_>,
    id: TenantId,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await
}

/// The live tenant with this slug, or the most recently deleted one.
pub async fn find_by_slug(
    executor: impl PgExecutor<'_>,
    slug: &str,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.slug = $1 ORDER BY (t.status = 'deleted'), t.created_at DESC LIMIT 1"
    ))
    .bind(slug)
    .fetch_optional(executor)
    .await
}

/// Locks the live tenant with this slug for a status change.
pub async fn lock_by_slug(
    executor: impl PgExecutor<'_>,
    slug: &str,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE t.slug = $1 AND t.status <> 'deleted' FOR UPDATE OF t"
    ))
    .bind(slug)
    .fetch_optional(executor)
    .await
}

pub struct ListFilter<'a> {
    pub status: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Oldest first, by (created_at, id), after the cursor.
pub async fn list(pool: &PgPool, filter: &ListFilter<'_>) -> Result<Vec<Tenant>, sqlx::Error> {
    let (after_time, after_id) = filter.after.unzip();
    sqlx::query_as(&format!(
        "{SELECT} WHERE ($1::text IS NULL OR t.status = $1) AND ($2::text IS NULL OR t.plan = $2) \
         AND ($3::timestamptz IS NULL OR (t.created_at, t.id) > ($3, $4)) \
         ORDER BY t.created_at, t.id LIMIT $5"
    ))
    .bind(filter.status)
    .bind(filter.plan)
    .bind(after_time)
    .bind(after_id)
    .bind(filter.limit)
    .fetch_all(pool)
    .await
}

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
           schema_version = $2, first_admin_password_hash = NULL, updated_at = now() \
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

/// The tenant an idempotency key was used for, and the hash of that request.
pub async fn idempotent_request(
    executor: impl PgExecutor<'_>,
    admin_id: AdminId,
    key: &str,
) -> Result<Option<(TenantId, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, request_hash FROM idempotency_keys WHERE admin_id = $1 AND key = $2",
    )
    .bind(admin_id)
    .bind(key)
    .fetch_optional(executor)
    .await
}

pub async fn remember_idempotency_key(
    executor: impl PgExecutor<'_>,
    admin_id: AdminId,
    key: &str,
    request_hash: &[u8],
    tenant_id: TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO idempotency_keys (admin_id, key, request_hash, tenant_id) VALUES ($1, $2, $3, $4)")
        .bind(admin_id)
        .bind(key)
        .bind(request_hash)
        .bind(tenant_id)
        .execute(executor)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Status::{self, *};

    #[test]
    fn the_lifecycle_allows_its_edges_and_nothing_else() {
        let all = [
            Provisioning,
            Active,
            Suspended,
            Restoring,
            Deleting,
            Deleted,
            Failed,
        ];
        let allowed = [
            (Provisioning, Active),
            (Provisioning, Failed),
            (Failed, Provisioning),
            (Active, Suspended),
            (Suspended, Active),
            (Active, Restoring),
            (Restoring, Active),
            (Active, Deleting),
            (Suspended, Deleting),
            (Failed, Deleting),
            (Deleting, Deleted),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
            assert_eq!(Status::parse(from.as_str()), Some(from));
        }
        assert_eq!(Status::parse("archived"), None);
    }
}
