//! What the control plane's API and `tenantctl --json` show: shapes made from catalog
//! rows, never the rows themselves. A column added to a row (a sealed secret, an internal
//! error text) reaches no client until a field is added here on purpose.
//!
//! Left out on purpose: a tenant's provisioning failure text and a failed backup's error
//! (they carry server addresses and driver messages; they are in the log, with the
//! tenant's id), a backup's multipart upload id, every sealed password.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tenancy_core::{BackupId, ServerId, TenantId};

use catalog::backups::{BackupStatus, Trigger};
use catalog::servers::ServerStatus;
use catalog::tenants::Status;

/// A tenant, as listed and as every change answers.
#[derive(Debug, Clone, Serialize)]
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
    /// The last provisioning step done (`configured` once routable); where a `failed`
    /// tenant stopped.
    pub provisioning_step: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub delete_after: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// An operator deleted it without a final backup.
    pub final_backup_waived: bool,
}

impl From<catalog::tenants::Tenant> for Tenant {
    fn from(row: catalog::tenants::Tenant) -> Self {
        let catalog::tenants::Tenant {
            id,
            slug,
            name,
            plan,
            status,
            server_id,
            server,
            database_name,
            schema_version,
            provisioning_step,
            failure_reason: _,
            created_at,
            updated_at,
            trial_ends_at,
            suspended_at,
            delete_after,
            deleted_at,
            final_backup_waived,
        } = row;
        Self {
            id,
            slug,
            name,
            plan,
            status,
            server_id,
            server,
            database_name,
            schema_version,
            provisioning_step,
            created_at,
            updated_at,
            trial_ends_at,
            suspended_at,
            delete_after,
            deleted_at,
            final_backup_waived,
        }
    }
}

/// `GET /v1/tenants/{slug}`: the tenant, its usage and its last backup.
#[derive(Debug, Clone, Serialize)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub usage: UsageSummary,
    /// The newest complete backup.
    pub last_backup: Option<BackupSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageSummary {
    pub requests_last_24h: i64,
    /// The database's size when last sampled (`None` before the first sample).
    pub storage_bytes: Option<i64>,
    pub storage_limit_bytes: i64,
    pub storage_exceeded: bool,
    pub storage_sampled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub id: BackupId,
    pub trigger: Trigger,
    pub bytes: Option<i64>,
    pub schema_version: Option<i64>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A database server: never its admin password.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub host: String,
    pub port: i32,
    pub admin_user: String,
    pub max_tenants: i32,
    pub connection_budget: i32,
    pub status: ServerStatus,
    pub schema_version: Option<i64>,
    /// The cluster's identity (`pg_control_system().system_identifier`).
    pub system_identifier: Option<String>,
    /// Live (not deleted) tenants placed on it.
    pub tenants: i64,
    pub created_at: DateTime<Utc>,
}

impl From<catalog::servers::Server> for Server {
    fn from(row: catalog::servers::Server) -> Self {
        let catalog::servers::Server {
            id,
            name,
            host,
            port,
            admin_user,
            max_tenants,
            connection_budget,
            status,
            schema_version,
            system_identifier,
            tenants,
            created_at,
        } = row;
        Self {
            id,
            name,
            host,
            port,
            admin_user,
            max_tenants,
            connection_budget,
            status,
            schema_version,
            system_identifier,
            tenants,
            created_at,
        }
    }
}

/// A backup (complete, or running when just requested).
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    pub id: BackupId,
    pub tenant_id: TenantId,
    pub tenant: String,
    pub server_id: ServerId,
    pub database_name: String,
    pub schema_version: Option<i64>,
    pub bucket: String,
    pub object_key: String,
    pub status: BackupStatus,
    pub trigger: Trigger,
    pub requested_by: String,
    pub bytes: Option<i64>,
    /// SHA-256 of the stored object, lower-case hex.
    pub sha256: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<catalog::backups::Backup> for Backup {
    fn from(row: catalog::backups::Backup) -> Self {
        let sha256 = row.sha256_hex();
        let catalog::backups::Backup {
            id,
            tenant_id,
            tenant,
            server_id,
            database_name,
            schema_version,
            bucket,
            object_key,
            upload_id: _,
            status,
            trigger,
            requested_by,
            bytes,
            sha256: _,
            error: _,
            started_at,
            completed_at,
        } = row;
        Self {
            id,
            tenant_id,
            tenant,
            server_id,
            database_name,
            schema_version,
            bucket,
            object_key,
            status,
            trigger,
            requested_by,
            bytes,
            sha256,
            started_at,
            completed_at,
        }
    }
}

impl From<&catalog::backups::Backup> for BackupSummary {
    fn from(row: &catalog::backups::Backup) -> Self {
        Self {
            id: row.id,
            trigger: row.trigger,
            bytes: row.bytes,
            schema_version: row.schema_version,
            completed_at: row.completed_at,
        }
    }
}
