//! `backup restore`: check the stored object end to end before anything is created; put
//! the tenant in `restoring` (the routers answer 503 `tenant_restoring`) and fence its old
//! database (no connection of its role, in-flight requests finished first), so no write is
//! acknowledged on a database about to be replaced; restore with `pg_restore` into a new
//! database, re-apply the tenant role's privileges, switch the tenant to it and back to
//! `active` in one catalog transaction (the routers follow the notification); the old
//! database is kept, renamed and closed, for `TENANCY_RESTORE_KEEP`, then dropped by the
//! jobs. A failure drops the new database and reopens the old one.

use std::time::Duration;

use catalog::audit::{Actor, Change};
use catalog::tenants::Status;
use secrecy::ExposeSecret;
use serde::Serialize;
use tenancy_core::{BackupId, ServerId, TenantId};
use uuid::Uuid;

use super::verify::{complete_backup, into_pg_restore, stream_checked};
use super::{BackupError, store, tools};
use crate::locks::{LockKey, SessionLock};
use crate::platform::Platform;

/// How long the routers get to hear that the tenant is `restoring` before its database is
/// fenced (they hear within milliseconds; their promise is a second). A request that
/// started before is then finished, or ends with the fence, never half-served.
const NOTICE: Duration = Duration::from_secs(1);

/// How long requests already running on the old database get to finish once the routers
/// start no new ones.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub tenant: String,
    pub backup_id: BackupId,
    pub database: String,
    pub previous_database: String,
    /// The replaced database, renamed, kept until `keep_until`.
    pub kept_database: String,
    pub keep_until: chrono::DateTime<chrono::Utc>,
    pub schema_version: Option<i64>,
}

/// Restores backup `id` over its own tenant. `expected_tenant` (a slug), when given, must
/// be the backup's tenant: a backup never lands on another tenant.
pub async fn restore(
    platform: &Platform,
    actor: &Actor,
    id: BackupId,
    expected_tenant: Option<&str>,
) -> Result<Restored, BackupError> {
    let store = store(platform)?;
    let backup = complete_backup(platform, id).await?;
    let tenant = catalog::tenants::get(&platform.db, backup.tenant_id)
        .await?
        .ok_or_else(|| BackupError::UnknownTenant(backup.tenant.clone()))?;
    if let Some(slug) = expected_tenant
        && slug != tenant.slug
    {
        return Err(BackupError::WrongTenant {
            backup: id,
            owner: tenant.slug,
            given: slug.to_owned(),
        });
    }
    let (Status::Active | Status::Suspended, Some(server_id), Some(previous)) = (
        tenant.status,
        tenant.server_id,
        tenant.database_name.clone(),
    ) else {
        return Err(BackupError::NotBackedUp {
            slug: tenant.slug,
            status: tenant.status,
        });
    };
    // The object must be whole before any database is made for it.
    stream_checked(store, &backup, None::<tokio::io::Sink>).await?;

    // One worker per tenant: no provisioning, drop or other restore meanwhile.
    let key = LockKey::Tenant(tenant.id);
    let Some(lock) = SessionLock::try_take(&platform.db, key).await? else {
        return Err(BackupError::Busy(tenant.slug));
    };
    let target = Target {
        tenant: tenant.id,
        slug: &tenant.slug,
        server_id,
        previous: &previous,
    };
    let result = restore_locked(platform, actor, &backup, &target).await;
    lock.release().await;
    result
}

/// Restores backup `id` into a new tenant `new_slug` (on the source tenant's plan, any
/// status, deleted included): the tenant is created, then its fresh database is replaced by
/// the backup's. A failed restore removes the new tenant again.
pub async fn restore_as(
    platform: &Platform,
    actor: &Actor,
    id: BackupId,
    new_slug: &str,
    name: Option<String>,
) -> Result<Restored, BackupError> {
    let store = store(platform)?;
    let backup = complete_backup(platform, id).await?;
    let source = catalog::tenants::get(&platform.db, backup.tenant_id)
        .await?
        .ok_or_else(|| BackupError::UnknownTenant(backup.tenant.clone()))?;
    let invalid = |field: &str, message: String| {
        BackupError::Api(crate::error::OpsError::validation(vec![
            catalog::plans::FieldError::new(field, message),
        ]))
    };
    let slug: tenancy_core::Slug = new_slug
        .parse()
        .map_err(|error: tenancy_core::IdError| invalid("slug", error.0))?;
    let plan: tenancy_core::PlanName = source
        .plan
        .parse()
        .map_err(|error: tenancy_core::IdError| invalid("plan", error.0))?;
    let email: tenancy_core::Email = format!("restore@{new_slug}.invalid")
        .parse()
        .map_err(|error: tenancy_core::IdError| invalid("slug", error.0))?;
    // The object must be whole before anything is created for it.
    stream_checked(store, &backup, None::<tokio::io::Sink>).await?;
    let new = crate::tenants::NewTenant {
        slug,
        name: name.unwrap_or_else(|| format!("{} (restored)", source.name)),
        plan,
        // A placeholder: the restored database brings the source's users.
        admin_email: email,
        admin_password: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
    };
    let tenant = match crate::tenants::create(platform, actor, new, None).await? {
        crate::tenants::Created::New(tenant) => tenant,
        crate::tenants::Created::Replayed(tenant) | crate::tenants::Created::Pending(tenant) => {
            return Err(BackupError::Busy(tenant.slug));
        }
    };
    let (Some(server_id), Some(previous)) = (tenant.server_id, tenant.database_name.clone()) else {
        return Err(BackupError::NotBackedUp {
            slug: tenant.slug,
            status: tenant.status,
        });
    };
    let key = LockKey::Tenant(tenant.id);
    let lock = SessionLock::take(&platform.db, key).await?;
    let target = Target {
        tenant: tenant.id,
        slug: &tenant.slug,
        server_id,
        previous: &previous,
    };
    let result = restore_locked(platform, actor, &backup, &target).await;
    lock.release().await;
    if result.is_err() {
        // Nothing half-done: the new tenant goes again.
        let _ = crate::tenants::transition(platform, actor, &tenant.slug, Status::Deleting).await;
        let _ = crate::tenants::provisioning::drop_tenant(platform, tenant.id).await;
    }
    result
}

/// The tenant a backup is restored into.
struct Target<'a> {
    tenant: TenantId,
    slug: &'a str,
    server_id: ServerId,
    previous: &'a str,
}

async fn restore_locked(
    platform: &Platform,
    actor: &Actor,
    backup: &catalog::backups::Backup,
    target: &Target<'_>,
) -> Result<Restored, BackupError> {
    let store = store(platform)?;
    let Target {
        tenant,
        slug,
        server_id,
        previous,
    } = *target;
    let address = crate::servers::address(platform, server_id).await?;
    let admin = address.connect("postgres").await?;
    let database = crate::DatabaseName::restored(tenant);
    let old = crate::DatabaseName::parse(previous).ok_or_else(|| {
        BackupError::Api(crate::error::OpsError::Internal(anyhow::anyhow!(
            "the catalog names a database this platform does not make: {previous}"
        )))
    })?;
    let restore_id = Uuid::new_v4();
    catalog::backups::start_restore(
        &platform.db,
        restore_id,
        backup,
        tenant,
        server_id,
        database.as_str(),
        &actor.name,
    )
    .await?;
    tracing::info!(backup = %backup.id, tenant_id = %tenant, database = %database, "restore started");
    // From here until the switch the routers answer 503 tenant_restoring, and the old
    // database takes no more writes (a suspended tenant is refused by the routers anyway).
    let fenced = catalog::tenants::mark_restoring(&platform.db, tenant).await?;
    let restored = async {
        if fenced {
            tokio::time::sleep(NOTICE).await;
            crate::tenant::fence_database(&admin, &old, tenant, DRAIN).await?;
        }
        crate::tenant::create_restore_target(&admin, &database, platform.installation).await?;
        let mut command = tools::command("pg_restore");
        command
            .arg("--dbname")
            .arg(database.as_str())
            .arg("--host")
            .arg(&address.host)
            .arg("--port")
            .arg(address.port.to_string())
            .arg("--username")
            .arg(&address.admin_user)
            .arg("--no-password")
            .arg("--no-owner")
            .arg("--no-privileges")
            .arg(format!("--role={}", crate::names::SCHEMA_OWNER_ROLE))
            .arg("--exit-on-error")
            .arg("--single-transaction")
            .env("PGPASSWORD", address.admin_password.expose_secret())
            .env("PGCONNECT_TIMEOUT", "10");
        // Read again, and checked again: what pg_restore got is what was verified.
        let output = into_pg_restore(store, backup, &mut command).await?;
        if !output.status.success() {
            return Err(BackupError::Restore {
                status: output.status.to_string(),
                stderr: tools::tail(&output.stderr),
            });
        }
        Ok(crate::tenant::finish_restored_database(&address, &admin, &database, tenant).await?)
    }
    .await;
    let failed = Failed {
        restore_id,
        tenant,
        database: &database,
        old: &old,
        fenced,
    };
    let (schema_version, users) = match restored {
        Ok(restored) => (restored.schema_version, restored.users),
        Err(error) => {
            fail(platform, &admin, &failed, &error).await;
            return Err(error);
        }
    };

    // The switch, back to `active`, the kept database and the audit entry: one transaction.
    let kept = crate::DatabaseName::restored(tenant);
    let keep_until = chrono::Utc::now()
        + chrono::Duration::from_std(platform.settings.restore_keep).unwrap_or_default();
    let mut transaction = platform.db.begin().await?;
    let switched = catalog::backups::switch_to_restored(
        &mut transaction,
        &catalog::backups::Switch {
            restore: restore_id,
            tenant,
            previous,
            restored: database.as_str(),
            schema_version,
            users,
            kept: kept.as_str(),
            keep_until,
        },
    )
    .await?;
    if !switched {
        drop(transaction);
        let error = BackupError::Busy(slug.to_owned());
        fail(platform, &admin, &failed, &error).await;
        return Err(error);
    }
    catalog::audit::record(
        &mut *transaction,
        actor,
        Change {
            action: "tenant.restore",
            entity_type: "tenant",
            entity_id: slug,
            before: Some(serde_json::json!({ "database_name": previous })),
            after: Some(serde_json::json!({
                "database_name": database.as_str(),
                "backup_id": backup.id,
                "backup_of": backup.tenant,
                "schema_version": schema_version,
                "kept_database": kept.as_str(),
                "keep_until": keep_until,
            })),
        },
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(backup = %backup.id, tenant_id = %tenant, database = %database, kept = %kept, "tenant switched to its restored database");

    // The replaced database: closed, renamed, kept. A failure leaves it under its old
    // name, still recorded (and so never swept) until the jobs drop it.
    if let Err(error) = crate::tenant::retire_database(&admin, &old, &kept, tenant).await {
        tracing::warn!(tenant_id = %tenant, database = previous, %error, "rename the database replaced by a restore");
    }
    Ok(Restored {
        tenant: slug.to_owned(),
        backup_id: backup.id,
        database: database.as_str().to_owned(),
        previous_database: previous.to_owned(),
        kept_database: kept.as_str().to_owned(),
        keep_until,
        schema_version,
    })
}

/// What a failed restore must undo.
struct Failed<'a> {
    restore_id: Uuid,
    tenant: TenantId,
    database: &'a crate::DatabaseName,
    old: &'a crate::DatabaseName,
    fenced: bool,
}

/// A failed restore leaves the tenant on its old database (open to it again, `active`) and
/// no new database behind.
async fn fail(
    platform: &Platform,
    admin: &tokio_postgres::Client,
    failed: &Failed<'_>,
    error: &BackupError,
) {
    let restore_id = failed.restore_id;
    tracing::warn!(restore = %restore_id, %error, "restore failed");
    if let Err(drop_error) =
        crate::tenant::drop_database(admin, failed.database, platform.installation).await
    {
        tracing::warn!(restore = %restore_id, error = %drop_error, "drop the database of a failed restore; the sweep retries");
    }
    if failed.fenced {
        if let Err(open_error) =
            crate::tenant::open_database(admin, failed.old, failed.tenant).await
        {
            tracing::error!(restore = %restore_id, error = %open_error, "reopen the tenant's database after a failed restore");
        }
        let _ = catalog::tenants::end_restoring(&platform.db, failed.tenant).await;
    }
    let _ = catalog::backups::fail_restore(&platform.db, restore_id, &error.to_string()).await;
}
