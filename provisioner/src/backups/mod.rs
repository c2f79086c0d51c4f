//! Tenant backups: `pg_dump` custom-format archives streamed into S3 multipart
//! uploads, hashed on the way, recorded `complete` in the catalog only once the object is
//! there and its size checked; verification; listing.

mod create;
mod restore;
mod store;
mod tools;
mod verify;

use catalog::backups::Backup;
use catalog::tenants::Status;
use tenancy_core::BackupId;

use crate::error::OpsError;
use crate::platform::Platform;

pub use create::{Pending, Trigger, begin, create};
pub use restore::{Restored, restore, restore_as};
pub use store::{S3Args, Store, StoreError};
pub use verify::{Verified, verify};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backups are not configured: set TENANCY_S3_BUCKET (and the S3 credentials)")]
    NotConfigured,
    #[error("no tenant {0}")]
    UnknownTenant(String),
    #[error("no backup {0}")]
    UnknownBackup(BackupId),
    #[error("tenant {slug} is {status}: only an active or suspended tenant is backed up")]
    NotBackedUp { slug: String, status: Status },
    #[error("pg_dump failed ({status}): {stderr}")]
    Dump { status: String, stderr: String },
    #[error("backup {backup} belongs to tenant {owner}, not {given}: refused")]
    WrongTenant {
        backup: BackupId,
        owner: String,
        given: String,
    },
    #[error("tenant {0} is busy (being provisioned, dropped or restored); try again")]
    Busy(String),
    #[error("pg_restore failed ({status}): {stderr}")]
    Restore { status: String, stderr: String },
    #[error("pg_restore --list failed ({status}): {stderr}")]
    List { status: String, stderr: String },
    #[error(
        "the stored object does not match the backup: expected {expected_bytes} bytes with SHA-256 {expected_sha256}, read {bytes} bytes with SHA-256 {sha256}"
    )]
    Corrupt {
        expected_bytes: i64,
        expected_sha256: String,
        bytes: i64,
        sha256: String,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Server(#[from] crate::ProvisionError),
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Api(#[from] OpsError),
    #[error("the catalog: {0}")]
    Catalog(#[from] sqlx::Error),
}

impl From<BackupError> for OpsError {
    fn from(error: BackupError) -> Self {
        match error {
            BackupError::NotConfigured => OpsError::ServiceUnavailable {
                code: "backups_not_configured",
                detail: error.to_string(),
            },
            BackupError::UnknownTenant(slug) => {
                OpsError::not_found("tenant_not_found", format!("no tenant `{slug}`"))
            }
            BackupError::UnknownBackup(id) => {
                OpsError::not_found("backup_not_found", format!("no backup {id}"))
            }
            BackupError::NotBackedUp { .. } => {
                OpsError::conflict("invalid_state", error.to_string())
            }
            BackupError::WrongTenant { .. } => {
                OpsError::conflict("wrong_tenant", error.to_string())
            }
            BackupError::Busy(_) => OpsError::conflict("tenant_busy", error.to_string()),
            BackupError::Api(error) => error,
            BackupError::Catalog(error) => error.into(),
            other => {
                tracing::warn!(error = %other, "backup operation failed");
                OpsError::ServiceUnavailable {
                    code: "backup_failed",
                    detail: "the backup could not be completed; nothing was kept".to_owned(),
                }
            }
        }
    }
}

pub(crate) fn store(platform: &Platform) -> Result<&Store, BackupError> {
    platform
        .settings
        .backup_store
        .as_ref()
        .ok_or(BackupError::NotConfigured)
}

/// Complete backups, newest first: of one tenant (by slug) or of all.
pub async fn list(platform: &Platform, slug: Option<&str>) -> Result<Vec<Backup>, BackupError> {
    let tenant = match slug {
        Some(slug) => Some(
            catalog::tenants::find_by_slug(&platform.db, slug)
                .await?
                .ok_or_else(|| BackupError::UnknownTenant(slug.to_owned()))?
                .id,
        ),
        None => None,
    };
    Ok(catalog::backups::list_complete(&platform.db, tenant).await?)
}

/// Applies each plan's `backup_retention_days`: deletes older complete backups' objects and
/// marks them pruned, never a tenant's newest complete backup. With `dry_run`, only says
/// which would go.
pub async fn prune(platform: &Platform, dry_run: bool) -> Result<Vec<Backup>, BackupError> {
    let store = store(platform)?;
    let due = catalog::backups::past_retention(&platform.db).await?;
    if dry_run {
        return Ok(due);
    }
    let mut pruned = Vec::with_capacity(due.len());
    for backup in due {
        store.delete(&backup.object_key).await?;
        catalog::backups::mark_pruned(&platform.db, backup.id).await?;
        tracing::info!(backup = %backup.id, tenant_id = %backup.tenant_id, "backup pruned");
        pruned.push(backup);
    }
    Ok(pruned)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
