//! Tenants: their lifecycle, placement and provisioning progress.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tenancy_core::{AdminId, ServerId, TenantId};
use uuid::Uuid;

mod progress;
mod sets;

pub use progress::*;
pub use sets::*;

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
    /// Its database's users.
    pub users: i64,
}

/// Records an adopted tenant, `active` at once (its database and role are ready). A live
/// tenant with the same slug fails on `tenants_slug_live_key`.
pub async fn insert_adopted(
    executor: impl PgExecutor<'_>,
    adopted: &Adopted<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, plan, status, server_id, database_name, app_role, \
           app_password, schema_version, users_count, users_counted_at) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10::integer, now())",
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
    .bind(adopted.users)
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

/// The ids of every tenant that has had this slug (a slug is freed when its tenant is
/// deleted).
pub async fn ids_by_slug(pool: &PgPool, slug: &str) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_all(pool)
        .await
}

pub struct ListFilter<'a> {
    pub status: Option<&'a str>,
    pub plan: Option<&'a str>,
    /// The database server's name.
    pub server: Option<&'a str>,
    /// Leave deleted tenants out (when no status is asked for).
    pub live_only: bool,
    /// A `LIKE` pattern on the slug or the lower-cased name (metacharacters escaped).
    pub search: Option<&'a str>,
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Oldest first, by (created_at, id), after the cursor.
pub async fn list(pool: &PgPool, filter: &ListFilter<'_>) -> Result<Vec<Tenant>, sqlx::Error> {
    let (after_time, after_id) = filter.after.unzip();
    sqlx::query_as(&format!(
        "{SELECT} WHERE ($1::text IS NULL OR t.status = $1) AND ($2::text IS NULL OR t.plan = $2) \
         AND ($3::timestamptz IS NULL OR (t.created_at, t.id) > ($3, $4)) \
         AND ($6::text IS NULL OR t.slug LIKE $6 OR lower(t.name) LIKE $6) \
         AND ($7::text IS NULL OR s.name = $7) \
         AND (NOT $8 OR t.status <> 'deleted') \
         ORDER BY t.created_at, t.id LIMIT $5"
    ))
    .bind(filter.status)
    .bind(filter.plan)
    .bind(after_time)
    .bind(after_id)
    .bind(filter.limit)
    .bind(filter.search)
    .bind(filter.server)
    .bind(filter.live_only)
    .fetch_all(pool)
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
