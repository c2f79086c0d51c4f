//! `backup restore`: check the stored object end to end before anything is created, restore
//! it with `pg_restore` into a new database of the tenant, re-apply the tenant role's
//! privileges, switch the tenant to it in the catalog (the routers follow the
//! notification), and drop the old database only after the switch.

use std::time::Duration;

use catalog::audit::{Actor, Change};
use catalog::tenants::Status;
use secrecy::ExposeSecret;
use serde::Serialize;
use tenancy_core::TenantId;
use uuid::Uuid;

use super::verify::{complete_backup, into_pg_restore, stream_checked};
use super::{BackupError, store, tools};
use crate::locks::SessionLock;
use crate::state::Platform;

/// How long the routers get to follow the switch before the old database is dropped
/// (they hear of it within milliseconds; sessions still on it are then ended).
const SWITCH_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub tenant: String,
    pub backup_id: Uuid,
    pub database: String,
    pub previous_database: String,
    pub schema_version: Option<i64>,
}

/// Restores backup `id` over its own tenant. `expected_tenant` (a slug), when given, must
/// be the backup's tenant: a backup never lands on another tenant.
pub async fn restore(
    platform: &Platform,
    actor: &Actor,
    id: Uuid,
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
    let (Some(Status::Active | Status::Suspended), Some(server_id), Some(previous)) = (
        tenant.status(),
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
    let key = crate::tenants::provisioning::lock_key(tenant.id);
    let Some(lock) = SessionLock::try_take(&platform.db, key).await? else {
        return Err(BackupError::Busy(tenant.slug));
    };
    let target = Target {
        tenant: TenantId(tenant.id),
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
    id: Uuid,
    new_slug: &str,
    name: Option<String>,
) -> Result<Restored, BackupError> {
    let store = store(platform)?;
    let backup = complete_backup(platform, id).await?;
    let source = catalog::tenants::get(&platform.db, backup.tenant_id)
        .await?
        .ok_or_else(|| BackupError::UnknownTenant(backup.tenant.clone()))?;
    let invalid = |field: &str, message: String| {
        BackupError::Api(crate::error::ApiError::validation(vec![
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
    let key = crate::tenants::provisioning::lock_key(tenant.id);
    let lock = SessionLock::take(&platform.db, key).await?;
    let target = Target {
        tenant: TenantId(tenant.id),
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
    server_id: Uuid,
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
    let database = provisioner::DatabaseName::restored(tenant);
    let restore_id = Uuid::new_v4();
    catalog::backups::start_restore(
        &platform.db,
        restore_id,
        backup,
        tenant.0,
        server_id,
        database.as_str(),
        &actor.name,
    )
    .await?;
    tracing::info!(backup = %backup.id, tenant_id = %tenant, database = %database, "restore started");
    let restored = async {
        provisioner::tenant::create_restore_target(&admin, &database).await?;
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
            .arg(format!("--role={}", provisioner::names::SCHEMA_OWNER_ROLE))
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
        Ok(
            provisioner::tenant::finish_restored_database(&address, &admin, &database, tenant)
                .await?,
        )
    }
    .await;
    let schema_version = match restored {
        Ok(version) => version,
        Err(error) => {
            fail(platform, &admin, restore_id, &database, &error).await;
            return Err(error);
        }
    };

    // The switch and its audit entry, in one transaction.
    let mut transaction = platform.db.begin().await?;
    let switched = catalog::backups::switch_to_restored(
        &mut transaction,
        restore_id,
        tenant.0,
        previous,
        database.as_str(),
        schema_version,
    )
    .await?;
    if !switched {
        drop(transaction);
        let error = BackupError::Busy(slug.to_owned());
        fail(platform, &admin, restore_id, &database, &error).await;
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
            })),
        },
    )
    .await?;
    transaction.commit().await?;
    tracing::info!(backup = %backup.id, tenant_id = %tenant, database = %database, "tenant switched to its restored database");

    tokio::time::sleep(SWITCH_GRACE).await;
    if let Some(old) = provisioner::DatabaseName::parse(previous) {
        // A failure here leaves an unused database the orphan sweep drops.
        if let Err(error) = provisioner::tenant::drop_database(&admin, &old).await {
            tracing::warn!(tenant_id = %tenant, database = previous, %error, "drop the database replaced by a restore");
        }
    }
    Ok(Restored {
        tenant: slug.to_owned(),
        backup_id: backup.id,
        database: database.as_str().to_owned(),
        previous_database: previous.to_owned(),
        schema_version,
    })
}

/// A failed restore leaves the tenant on its old database and no new database behind.
async fn fail(
    platform: &Platform,
    admin: &provisioner::tokio_postgres::Client,
    restore_id: Uuid,
    database: &provisioner::DatabaseName,
    error: &BackupError,
) {
    tracing::warn!(restore = %restore_id, %error, "restore failed");
    if let Err(drop_error) = provisioner::tenant::drop_database(admin, database).await {
        tracing::warn!(restore = %restore_id, error = %drop_error, "drop the database of a failed restore; the sweep retries");
    }
    let _ = catalog::backups::fail_restore(&platform.db, restore_id, &error.to_string()).await;
}
