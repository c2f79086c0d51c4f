//! Tenant backups: one row per attempt; only `complete` rows are backups.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tenancy_core::{BackupId, ServerId, TenantId};
use uuid::Uuid;

/// A backup attempt's state: `running`, then `complete` (size and checksum known) or
/// `failed`; `pruned` once retention removed its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum BackupStatus {
    Running,
    Complete,
    Failed,
    Pruned,
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Scheduled,
    /// Before a deleted tenant's database is dropped.
    Final,
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Manual => "manual",
            Self::Scheduled => "scheduled",
            Self::Final => "final",
        })
    }
}

/// A backup row. Not an API response: the control plane's wire type is made from it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Backup {
    pub id: BackupId,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub server_id: ServerId,
    pub database_name: String,
    pub schema_version: Option<i64>,
    pub bucket: String,
    pub object_key: String,
    /// The multipart upload while it may need aborting.
    pub upload_id: Option<String>,
    pub status: BackupStatus,
    pub trigger: Trigger,
    pub requested_by: String,
    pub bytes: Option<i64>,
    pub sha256: Option<Vec<u8>>,
    /// Internal failure text (S3 or pg_dump errors): for the log and operators' CLI.
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Backup {
    /// The checksum in lower-case hex.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.as_ref().map(|bytes| {
            bytes
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        })
    }
}

const SELECT: &str = "SELECT b.id, b.tenant_id, t.slug AS tenant, b.server_id, b.database_name, \
    b.schema_version, b.bucket, b.object_key, b.upload_id, b.status, b.trigger, b.requested_by, \
    b.bytes, b.sha256, b.error, b.started_at, b.completed_at \
    FROM backups b JOIN tenants t ON t.id = b.tenant_id";

pub struct NewBackup<'a> {
    pub id: BackupId,
    pub tenant_id: TenantId,
    pub server_id: ServerId,
    pub database_name: &'a str,
    pub schema_version: Option<i64>,
    pub bucket: &'a str,
    pub object_key: &'a str,
    pub trigger: Trigger,
    pub requested_by: &'a str,
}

/// Records an attempt before anything is uploaded.
pub async fn start(pool: &PgPool, backup: &NewBackup<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO backups (id, tenant_id, server_id, database_name, schema_version, bucket, \
           object_key, trigger, requested_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(backup.id)
    .bind(backup.tenant_id)
    .bind(backup.server_id)
    .bind(backup.database_name)
    .bind(backup.schema_version)
    .bind(backup.bucket)
    .bind(backup.object_key)
    .bind(backup.trigger)
    .bind(backup.requested_by)
    .execute(pool)
    .await?;
    Ok(())
}

/// Remembers the multipart upload while it may need aborting (None once it is completed
/// or aborted).
pub async fn set_upload_id(
    pool: &PgPool,
    id: BackupId,
    upload_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE backups SET upload_id = $2 WHERE id = $1")
        .bind(id)
        .bind(upload_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn complete(
    pool: &PgPool,
    id: BackupId,
    bytes: i64,
    sha256: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE backups SET status = 'complete', bytes = $2, sha256 = $3, upload_id = NULL, \
           completed_at = now() WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(bytes)
    .bind(sha256)
    .execute(pool)
    .await?;
    Ok(())
}

/// The attempt failed. Its upload id stays until the upload is aborted.
pub async fn fail(pool: &PgPool, id: BackupId, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE backups SET status = 'failed', error = $2 WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: BackupId) -> Result<Option<Backup>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Complete backups, newest first, of one tenant or of all.
/// A tenant's newest complete backup.
pub async fn last_complete(pool: &PgPool, tenant: TenantId) -> Result<Option<Backup>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE b.status = 'complete' AND b.tenant_id = $1 \
         ORDER BY b.completed_at DESC, b.id LIMIT 1"
    ))
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

pub async fn list_complete(
    pool: &PgPool,
    tenant: Option<TenantId>,
) -> Result<Vec<Backup>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE b.status = 'complete' AND ($1::uuid IS NULL OR b.tenant_id = $1) \
         ORDER BY b.completed_at DESC, b.id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// Attempts with an upload that may need aborting: failed ones whose abort did not reach
/// the store, and running ones (the caller checks that their process is gone).
pub async fn with_upload(pool: &PgPool) -> Result<Vec<Backup>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE b.upload_id IS NOT NULL AND b.status IN ('running', 'failed') ORDER BY b.started_at"
    ))
    .fetch_all(pool)
    .await
}

/// Records a restore before its database exists.
pub async fn start_restore(
    pool: &PgPool,
    id: Uuid,
    backup: &Backup,
    tenant: TenantId,
    server_id: ServerId,
    database_name: &str,
    requested_by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO restores (id, backup_id, tenant_id, server_id, database_name, requested_by) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(backup.id)
    .bind(tenant)
    .bind(server_id)
    .bind(database_name)
    .bind(requested_by)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn fail_restore(pool: &PgPool, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE restores SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// A restore's switch: the tenant, the database it leaves and the one it takes.
pub struct Switch<'a> {
    pub restore: Uuid,
    pub tenant: TenantId,
    pub previous: &'a str,
    pub restored: &'a str,
    pub schema_version: Option<i64>,
    /// The restored database's users.
    pub users: i64,
    /// The name `previous` is kept under, until `keep_until`.
    pub kept: &'a str,
    pub keep_until: chrono::DateTime<chrono::Utc>,
}

/// Switches the tenant to the restored database, if it still uses `previous` (else
/// false: something else changed it meanwhile), and back from `restoring` to `active`.
/// `previous` is recorded as kept, under its new name, until `keep_until`. The routers
/// hear of it at commit.
pub async fn switch_to_restored(
    transaction: &mut sqlx::PgConnection,
    switch: &Switch<'_>,
) -> Result<bool, sqlx::Error> {
    let switched = sqlx::query(
        "UPDATE tenants SET database_name = $3, schema_version = $4, updated_at = now(), \
           users_count = $5::integer, users_counted_at = now(), \
           status = CASE WHEN status = 'restoring' THEN 'active' ELSE status END \
         WHERE id = $1 AND database_name = $2 AND status IN ('active', 'suspended', 'restoring')",
    )
    .bind(switch.tenant)
    .bind(switch.previous)
    .bind(switch.restored)
    .bind(switch.schema_version)
    .bind(switch.users)
    .execute(&mut *transaction)
    .await?
    .rows_affected()
        == 1;
    if switched {
        sqlx::query(
            "UPDATE restores SET status = 'complete', previous_database = $2, finished_at = now(), \
               kept_database = $3, keep_until = $4 \
             WHERE id = $1",
        )
        .bind(switch.restore)
        .bind(switch.previous)
        .bind(switch.kept)
        .bind(switch.keep_until)
        .execute(&mut *transaction)
        .await?;
    }
    Ok(switched)
}

/// Databases of restores still running on a server (the sweep leaves them alone).
pub async fn restoring_on_server(
    pool: &PgPool,
    server_id: ServerId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT database_name FROM restores WHERE server_id = $1 AND status = 'running'",
    )
    .bind(server_id)
    .fetch_all(pool)
    .await
}

/// Complete backups older than their tenant's plan's retention, except each tenant's
/// newest complete backup, oldest first.
pub async fn past_retention(pool: &PgPool) -> Result<Vec<Backup>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} JOIN plans p ON p.name = t.plan \
         WHERE b.status = 'complete' \
           AND b.completed_at < now() - make_interval(days => p.backup_retention_days) \
           AND b.id <> (SELECT n.id FROM backups n WHERE n.tenant_id = b.tenant_id \
                        AND n.status = 'complete' ORDER BY n.completed_at DESC, n.id DESC LIMIT 1) \
         ORDER BY b.completed_at"
    ))
    .fetch_all(pool)
    .await
}

/// The backup's object is deleted: it is no backup any more.
pub async fn mark_pruned(pool: &PgPool, id: BackupId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE backups SET status = 'pruned', pruned_at = now() WHERE id = $1 AND status = 'complete'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether the tenant has a complete final backup (taken when it was deleted).
pub async fn has_final(pool: &PgPool, tenant: TenantId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM backups WHERE tenant_id = $1 AND trigger = 'final' AND status = 'complete')",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
}

/// Active and suspended tenants whose newest backup (complete or running) is older than
/// their plan's `backup_interval_hours`, or who have none: due for a scheduled backup.
pub async fn due_for_schedule(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT t.slug FROM tenants t JOIN plans p ON p.name = t.plan \
         WHERE t.status IN ('active', 'suspended') \
         AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.tenant_id = t.id \
           AND b.status IN ('complete', 'running') \
           AND b.started_at > now() - make_interval(hours => p.backup_interval_hours)) \
         ORDER BY t.slug",
    )
    .fetch_all(pool)
    .await
}

/// A restore still marked running.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunningRestore {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub database_name: String,
}

pub async fn running_restores(
    pool: &PgPool,
    server_id: ServerId,
) -> Result<Vec<RunningRestore>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, database_name FROM restores WHERE server_id = $1 AND status = 'running'",
    )
    .bind(server_id)
    .fetch_all(pool)
    .await
}

/// A database kept after a restore switched its tenant away from it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Kept {
    pub restore_id: Uuid,
    pub server_id: ServerId,
    pub database_name: String,
}

/// Kept databases whose time is up.
pub async fn kept_due(pool: &PgPool) -> Result<Vec<Kept>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id AS restore_id, server_id, kept_database AS database_name FROM restores \
         WHERE kept_database IS NOT NULL AND kept_dropped_at IS NULL AND keep_until <= now()",
    )
    .fetch_all(pool)
    .await
}

pub async fn kept_dropped(pool: &PgPool, restore_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE restores SET kept_dropped_at = now() WHERE id = $1")
        .bind(restore_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether a restore's row still says `running` (read under its tenant's lock, this means
/// its process died).
pub async fn restore_still_running(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM restores WHERE id = $1 AND status = 'running')",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}

/// The newest backup attempts (any status), of one tenant or of the fleet, newest first.
pub async fn recent(
    pool: &PgPool,
    tenant: Option<TenantId>,
    limit: i64,
) -> Result<Vec<Backup>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE ($1::uuid IS NULL OR b.tenant_id = $1) ORDER BY b.started_at DESC LIMIT $2"
    ))
    .bind(tenant)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A restore as a tenant's page shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RestoreRow {
    pub id: Uuid,
    pub backup_id: BackupId,
    /// `running`, `complete` or `failed`.
    pub status: String,
    pub requested_by: String,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The tenant's latest restore.
pub async fn latest_restore(
    pool: &PgPool,
    tenant: TenantId,
) -> Result<Option<RestoreRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, backup_id, status, requested_by, error, started_at, finished_at FROM restores \
         WHERE tenant_id = $1 ORDER BY started_at DESC LIMIT 1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}
