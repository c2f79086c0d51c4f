//! Provisioning a reserved tenant, step by step, and dropping a deleted one.
//!
//! Each step is recorded in the catalog once done (`reserved -> role -> database ->
//! configured`, then `active`) and is idempotent, so a worker that dies mid-way leaves a
//! tenant that the next worker (a retried request, or the background job after a restart)
//! finishes. One worker at a time per tenant: a session-level advisory lock on a catalog
//! connection of its own, released when the worker ends or its process dies.

use crate::locks::{LockKey, SessionLock};
use catalog::tenants::Status;
use tenancy_core::{ServerId, TenantId};

use crate::error::{OpsError, OpsResult};
use crate::platform::Platform;

/// The steps, in order; a tenant's `provisioning_step` is the last one done.
const STEPS: [&str; 4] = ["reserved", "role", "database", "configured"];

/// How a provisioning attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tenant is active.
    Active,
    /// Provisioning failed; what it made was dropped and the tenant is `failed`.
    Failed(String),
    /// Another worker holds the tenant.
    Busy,
    /// The tenant is not being provisioned (already active, deleted, ...).
    NotPending,
}

/// Provisions a reserved tenant, or finishes an interrupted provisioning.
pub async fn provision(platform: &Platform, id: TenantId) -> OpsResult<Outcome> {
    let Some(lock) = SessionLock::try_take(&platform.db, LockKey::Tenant(id)).await? else {
        return Ok(Outcome::Busy);
    };
    let span = tracing::info_span!("provision", tenant_id = %id);
    let result = tracing::Instrument::instrument(run_steps(platform, id), span).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            let reason = error.to_string();
            tracing::error!(tenant_id = %id, %reason, "provisioning failed; rolling back");
            if let Err(cleanup) = drop_objects(platform, id).await {
                // Still `provisioning`: the background job retries the whole thing later.
                tracing::error!(tenant_id = %id, error = %cleanup, "roll back a failed provisioning");
                lock.release().await;
                return Err(cleanup);
            }
            catalog::tenants::mark_failed(&platform.db, id, &reason).await?;
            Outcome::Failed(reason)
        }
    };
    lock.release().await;
    Ok(outcome)
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}")]
    Server(#[from] crate::ProvisionError),
    #[error("{0}")]
    Api(#[from] OpsError),
    #[error("the catalog: {0}")]
    Catalog(#[from] sqlx::Error),
}

async fn run_steps(platform: &Platform, id: TenantId) -> Result<Outcome, OpsError> {
    let state = catalog::tenants::provisioning_state(&platform.db, id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("tenant {id} is not in the catalog")))?;
    if state.status != Status::Provisioning {
        return Ok(Outcome::NotPending);
    }
    match steps(platform, &state).await {
        Ok(()) => Ok(Outcome::Active),
        // Failures of the catalog itself are not the tenant's: leave it for a retry.
        Err(StepError::Catalog(error)) => Err(error.into()),
        Err(other) => Err(OpsError::Internal(anyhow::anyhow!("{other}"))),
    }
}

async fn steps(
    platform: &Platform,
    state: &catalog::tenants::ProvisioningState,
) -> Result<(), StepError> {
    let id = state.id;
    let tenant = id;
    let server_id = state
        .server_id
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("tenant {id} has no server")))?;
    let address = crate::servers::address(platform, server_id).await?;
    let done = state
        .provisioning_step
        .as_deref()
        .and_then(|step| STEPS.iter().position(|known| *known == step))
        .unwrap_or(0);
    let admin = address.connect("postgres").await?;
    if done < 1 {
        let sealed = state.app_password.as_deref().ok_or_else(|| {
            OpsError::Internal(anyhow::anyhow!("tenant {id} has no role password"))
        })?;
        let password = platform
            .sealer
            .open_secret(&catalog::tenants::password_context(id), sealed)
            .map_err(|error| {
                OpsError::Internal(anyhow::Error::new(error).context("open a role password"))
            })?;
        let limits = crate::RoleLimits {
            max_connections: state.max_connections,
            statement_timeout_ms: state.statement_timeout_ms,
        };
        crate::tenant::ensure_role(&admin, tenant, &password, limits, platform.installation)
            .await?;
        step_done(platform, id, "role").await?;
    }
    if done < 2 {
        if !adopt_warm_database(platform, &admin, server_id, tenant).await? {
            crate::tenant::ensure_database(&admin, tenant, platform.installation).await?;
        }
        step_done(platform, id, "database").await?;
    }
    let mut schema_version = None;
    if done < 3 {
        let first_admin = state
            .first_admin_email
            .as_deref()
            .zip(state.first_admin_password_hash.as_deref());
        schema_version = crate::tenant::configure_database(&address, tenant, first_admin).await?;
        step_done(platform, id, "configured").await?;
    }
    if schema_version.is_none() {
        let client = address
            .connect(crate::DatabaseName::for_tenant(tenant).as_str())
            .await?;
        schema_version = tenant_schema::applied_version(&client)
            .await
            .map_err(|source| crate::ProvisionError::Database {
                action: "read the schema version",
                source,
            })?;
    }
    catalog::tenants::mark_active(&platform.db, id, schema_version).await?;
    tracing::info!(tenant_id = %id, "tenant provisioned");
    Ok(())
}

/// Takes a database from the server's warm pool (cloned from the current template ahead of
/// time) by renaming it. False when the pool is empty or the database exists already (a
/// re-run). The pool row stays locked until the rename is done, so the orphan sweep never
/// sees the database without its row.
async fn adopt_warm_database(
    platform: &Platform,
    admin: &tokio_postgres::Client,
    server_id: ServerId,
    tenant: TenantId,
) -> Result<bool, StepError> {
    if crate::tenant::tenant_database_exists(admin, tenant).await? {
        return Ok(false);
    }
    let Some(version) = catalog::servers::get(&platform.db, server_id)
        .await?
        .and_then(|server| server.schema_version)
    else {
        return Ok(false);
    };
    loop {
        let mut transaction = platform.db.begin().await?;
        let Some(name) = catalog::warm::lock_one(&mut *transaction, server_id, version).await?
        else {
            return Ok(false);
        };
        let adopted = match crate::DatabaseName::parse(&name) {
            Some(warm) => crate::tenant::adopt_warm_database(admin, &warm, tenant).await?,
            None => false,
        };
        catalog::warm::forget(&mut *transaction, &name).await?;
        transaction.commit().await?;
        if adopted {
            return Ok(true);
        }
        // The row named a database that is gone; it is forgotten now: try the next.
    }
}

async fn step_done(
    platform: &Platform,
    id: TenantId,
    step: &'static str,
) -> Result<(), sqlx::Error> {
    catalog::tenants::set_step(&platform.db, id, step).await?;
    if platform.settings.fault_after_step.as_deref() == Some(step) {
        // Test-only fault injection: die as a killed process would, between two steps.
        tracing::error!(tenant_id = %id, step, "fault injection: aborting");
        std::process::abort();
    }
    Ok(())
}

/// Drops a tenant's database and role on its server. Idempotent.
async fn drop_objects(platform: &Platform, id: TenantId) -> OpsResult<()> {
    let tenant = catalog::tenants::get(&platform.db, id)
        .await?
        .ok_or_else(|| OpsError::Internal(anyhow::anyhow!("tenant {id} is not in the catalog")))?;
    let Some(server_id) = tenant.server_id else {
        return Ok(());
    };
    let address = crate::servers::address(platform, server_id).await?;
    let admin = address
        .connect("postgres")
        .await
        .map_err(super::unavailable_server)?;
    crate::tenant::drop_tenant(&admin, id, platform.installation)
        .await
        .map_err(super::unavailable_server)
}

/// Drops a deleted tenant's database and role, then marks it `deleted`. One worker at a
/// time per tenant (the request that deleted it and the background job may both try): the
/// tenant's advisory lock, then a fresh look at its status. A tenant whose lock is held
/// (a backup or restore running on it) is left for the next round: nobody waits on it.
pub async fn drop_tenant(platform: &Platform, id: TenantId) -> OpsResult<()> {
    let Some(lock) = SessionLock::try_take(&platform.db, LockKey::Tenant(id)).await? else {
        tracing::info!(tenant_id = %id, "tenant busy; its drop waits for the next round");
        return Ok(());
    };
    let result = drop_locked(platform, id).await;
    lock.release().await;
    result
}

async fn drop_locked(platform: &Platform, id: TenantId) -> OpsResult<()> {
    let Some(before) = catalog::tenants::get(&platform.db, id).await? else {
        return Ok(());
    };
    if before.status != Status::Deleting {
        return Ok(()); // Dropped by another worker meanwhile.
    }
    final_backup(platform, &before).await?;
    drop_objects(platform, id).await?;
    let mut transaction = platform.db.begin().await?;
    catalog::tenants::set_status(&mut *transaction, id, Status::Deleted, None).await?;
    if let Some(after) = catalog::tenants::get(&mut *transaction, id).await? {
        super::audit(
            &mut transaction,
            &system_actor(),
            "tenant.drop",
            &before,
            &after,
        )
        .await?;
    }
    transaction.commit().await?;
    tracing::info!(tenant_id = %id, "tenant database dropped");
    Ok(())
}

/// A deleted tenant's database is dropped only once a final backup of it is complete (a
/// failed one keeps the database; the drop is retried), unless an operator waived it. A
/// tenant without a database (its provisioning failed) has nothing to back up.
async fn final_backup(platform: &Platform, tenant: &catalog::tenants::Tenant) -> OpsResult<()> {
    if tenant.final_backup_waived
        || catalog::backups::has_final(&platform.db, tenant.id).await?
        || !has_database(platform, tenant).await?
    {
        return Ok(());
    }
    if platform.settings.backup_store.is_none() {
        return Err(OpsError::ServiceUnavailable {
            code: "final_backup_failed",
            detail: "the tenant is deleted, but backups are not configured: its database is kept until a final backup can be taken".to_owned(),
        });
    }
    crate::backups::create(
        platform,
        &tenant.slug,
        crate::backups::Trigger::Final,
        &system_actor().name,
    )
    .await
    .map_err(|error| {
        tracing::warn!(tenant_id = %tenant.id, %error, "final backup failed; the database is kept");
        OpsError::ServiceUnavailable {
            code: "final_backup_failed",
            detail: "the tenant is deleted, but its final backup failed: its database is kept and the drop is retried".to_owned(),
        }
    })?;
    Ok(())
}

/// Whether the tenant's database exists on its server.
async fn has_database(platform: &Platform, tenant: &catalog::tenants::Tenant) -> OpsResult<bool> {
    let (Some(server_id), Some(name)) = (tenant.server_id, tenant.database_name.as_deref()) else {
        return Ok(false);
    };
    let Some(database) = crate::DatabaseName::parse(name) else {
        return Ok(false);
    };
    let address = crate::servers::address(platform, server_id).await?;
    let admin = address
        .connect("postgres")
        .await
        .map_err(super::unavailable_server)?;
    crate::tenant::database_exists(&admin, &database)
        .await
        .map_err(super::unavailable_server)
}

/// The actor of background jobs in the audit log.
pub fn system_actor() -> catalog::audit::Actor {
    catalog::audit::Actor {
        id: None,
        name: "system".to_owned(),
    }
}
