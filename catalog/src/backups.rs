//! Tenant backups: one row per attempt; only `complete` rows are backups.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Backup {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub server_id: Uuid,
    pub database_name: String,
    pub schema_version: Option<i64>,
    pub bucket: String,
    pub object_key: String,
    #[serde(skip)]
    pub upload_id: Option<String>,
    pub status: String,
    pub trigger: String,
    pub requested_by: String,
    pub bytes: Option<i64>,
    #[serde(serialize_with = "hex")]
    pub sha256: Option<Vec<u8>>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

fn hex<S: serde::Serializer>(value: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(bytes) => serializer.serialize_str(
            &bytes
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>(),
        ),
        None => serializer.serialize_none(),
    }
}

const SELECT: &str = "SELECT b.id, b.tenant_id, t.slug AS tenant, b.server_id, b.database_name, \
    b.schema_version, b.bucket, b.object_key, b.upload_id, b.status, b.trigger, b.requested_by, \
    b.bytes, b.sha256, b.error, b.started_at, b.completed_at \
    FROM backups b JOIN tenants t ON t.id = b.tenant_id";

pub struct NewBackup<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub server_id: Uuid,
    pub database_name: &'a str,
    pub schema_version: Option<i64>,
    pub bucket: &'a str,
    pub object_key: &'a str,
    pub trigger: &'a str,
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
    id: Uuid,
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
    id: Uuid,
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
pub async fn fail(pool: &PgPool, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE backups SET status = 'failed', error = $2 WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Backup>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE b.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Complete backups, newest first, of one tenant or of all.
pub async fn list_complete(
    pool: &PgPool,
    tenant: Option<Uuid>,
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

/// The session advisory lock a backup's process holds while it runs: free while the row
/// says `running` means the process died.
pub fn lock_key(id: Uuid) -> i64 {
    let bytes = id.as_bytes();
    i64::from_be_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ]) ^ 0x6261_636b_7570_0000
}
