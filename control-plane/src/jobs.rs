//! Background jobs of the control plane, run on an interval (and once at start-up, so a
//! restart after a crash finishes what the crash interrupted):
//! - finish provisionings that no worker holds (their worker died);
//! - drop tenants whose deletion grace period is over;
//! - suspend tenants whose trial has ended;
//! - drop databases and roles on the servers that the catalog does not know (left by a
//!   crash between creating an object and recording it, or by a drop cut short).

use std::collections::HashSet;
use std::time::Duration;

use catalog::tenants::Status;
use tenancy_core::TenantId;
use tokio::task::JoinHandle;

use crate::locks::SessionLock;
use crate::state::Platform;
use crate::tenants::provisioning::{self, Outcome, system_actor};

/// Runs the jobs every `interval` until the task is aborted.
pub fn spawn(platform: Platform, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            run_once(&platform).await;
        }
    })
}

/// One round of every job; errors are logged and retried next round.
pub async fn run_once(platform: &Platform) {
    if let Err(error) = resume_provisioning(platform).await {
        tracing::warn!(error = %error, "job: resume provisioning");
    }
    if let Err(error) = drop_due(platform).await {
        tracing::warn!(error = %error, "job: drop deleted tenants");
    }
    if let Err(error) = suspend_expired_trials(platform).await {
        tracing::warn!(error = %error, "job: suspend expired trials");
    }
    if let Err(error) = sweep_orphans(platform).await {
        tracing::warn!(error = %error, "job: sweep orphans");
    }
    if let Err(error) = sample_storage(platform).await {
        tracing::warn!(error = %error, "job: sample storage");
    }
    if let Err(error) = refill_warm_pools(platform).await {
        tracing::warn!(error = %error, "job: refill warm pools");
    }
    if let Err(error) = scheduled_backups(platform).await {
        tracing::warn!(error = %error, "job: scheduled backups");
    }
}

/// Backs up the tenants whose last backup is older than their plan's interval (one after the other:
/// a round never floods the servers), then applies the plans' retention.
async fn scheduled_backups(platform: &Platform) -> Result<(), crate::backups::BackupError> {
    if !platform.settings.scheduled_backups || platform.settings.backup_store.is_none() {
        return Ok(());
    }
    for slug in catalog::backups::due_for_schedule(&platform.db).await? {
        if let Err(error) = crate::backups::create(
            platform,
            &slug,
            crate::backups::Trigger::Scheduled,
            &system_actor().name,
        )
        .await
        {
            tracing::warn!(tenant = %slug, %error, "job: scheduled backup failed");
        }
    }
    crate::backups::prune(platform, false).await?;
    Ok(())
}

/// Samples every tenant database's size; a tenant over its plan's storage limit is flagged
/// (the routers then refuse its writes) until it is under again.
async fn sample_storage(platform: &Platform) -> Result<(), crate::error::ApiError> {
    for secret in catalog::servers::all_secrets(&platform.db).await? {
        let server_id = secret.id;
        let address = crate::servers::to_address(platform, secret)?;
        let Ok(admin) = address.connect("postgres").await else {
            continue;
        };
        let rows = admin
            .query(
                "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datname ~ '^t_[0-9a-f]{32}(_[0-9a-f]{8})?$'",
                &[],
            )
            .await
            .map_err(|source| crate::tenants::unavailable_server(provisioner::ProvisionError::Database {
                action: "measure tenant databases",
                source,
            }))?;
        let sizes: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        catalog::usage::record_storage(&platform.db, server_id, &sizes).await?;
    }
    Ok(())
}

/// A restore holds its tenant's advisory lock from its row to its end: a `running` row with
/// the lock free belongs to a process that died.
async fn reclaim_dead_restores(
    platform: &Platform,
    admin: &provisioner::tokio_postgres::Client,
    server_id: uuid::Uuid,
) -> Result<(), crate::error::ApiError> {
    for restore in catalog::backups::running_restores(&platform.db, server_id).await? {
        let key = provisioning::lock_key(restore.tenant_id);
        if let Some(lock) = SessionLock::try_take(&platform.db, key).await? {
            tracing::warn!(%server_id, restore = %restore.id, database = %restore.database_name, "job: dropping the database of a restore whose process died");
            if let Some(database) = provisioner::DatabaseName::parse(&restore.database_name) {
                provisioner::tenant::drop_database(admin, &database)
                    .await
                    .map_err(crate::tenants::unavailable_server)?;
            }
            catalog::backups::fail_restore(&platform.db, restore.id, "abandoned: its process died")
                .await?;
            lock.release().await;
        }
    }
    Ok(())
}

/// Keeps `warm_pool_size` databases cloned ahead on every server whose template is ready.
async fn refill_warm_pools(platform: &Platform) -> Result<(), crate::error::ApiError> {
    let target = i64::from(platform.settings.warm_pool_size);
    for server in catalog::servers::list(&platform.db).await? {
        let Some(version) = server.schema_version.filter(|_| server.status == "active") else {
            continue;
        };
        let stale = catalog::warm::stale(&platform.db, server.id).await?;
        let missing = target - catalog::warm::count(&platform.db, server.id).await?
            + i64::try_from(stale.len()).unwrap_or(0);
        if missing <= 0 {
            continue;
        }
        let address = crate::servers::address(platform, server.id).await?;
        let admin = address
            .connect("postgres")
            .await
            .map_err(crate::tenants::unavailable_server)?;
        for name in stale {
            if let Some(database) = provisioner::DatabaseName::parse(&name) {
                provisioner::tenant::drop_database(&admin, &database)
                    .await
                    .map_err(crate::tenants::unavailable_server)?;
            }
            catalog::warm::forget(&platform.db, &name).await?;
        }
        for _ in 0..missing {
            let warm = provisioner::DatabaseName::warm();
            catalog::warm::announce(&platform.db, warm.as_str(), server.id).await?;
            provisioner::tenant::create_warm_database(&admin, &warm)
                .await
                .map_err(crate::tenants::unavailable_server)?;
            catalog::warm::mark_ready(&platform.db, warm.as_str(), version).await?;
        }
    }
    Ok(())
}

async fn resume_provisioning(platform: &Platform) -> Result<(), crate::error::ApiError> {
    for id in catalog::tenants::ids_with_status(&platform.db, Status::Provisioning).await? {
        match provisioning::provision(platform, id).await? {
            Outcome::Active => {
                tracing::info!(tenant_id = %id, "job: finished an interrupted provisioning")
            }
            Outcome::Failed(reason) => {
                tracing::warn!(tenant_id = %id, %reason, "job: provisioning failed")
            }
            Outcome::Busy | Outcome::NotPending => {}
        }
    }
    Ok(())
}

async fn drop_due(platform: &Platform) -> Result<(), crate::error::ApiError> {
    for id in catalog::tenants::due_for_drop(&platform.db).await? {
        provisioning::drop_tenant(platform, id).await?;
    }
    Ok(())
}

async fn suspend_expired_trials(platform: &Platform) -> Result<(), crate::error::ApiError> {
    for id in catalog::tenants::expired_trials(&platform.db).await? {
        let Some(tenant) = catalog::tenants::get(&platform.db, id).await? else {
            continue;
        };
        crate::tenants::transition(platform, &system_actor(), &tenant.slug, Status::Suspended)
            .await?;
        tracing::info!(tenant_id = %id, "job: trial ended; tenant suspended");
    }
    Ok(())
}

async fn sweep_orphans(platform: &Platform) -> Result<(), crate::error::ApiError> {
    for secret in catalog::servers::all_secrets(&platform.db).await? {
        let server_id = secret.id;
        let address = crate::servers::to_address(platform, secret)?;
        let admin = match address.connect("postgres").await {
            Ok(admin) => admin,
            Err(error) => {
                tracing::warn!(%server_id, %error, "job: server unreachable; sweep skipped");
                continue;
            }
        };
        // List the server first, then the catalog: an object created after its tenant was
        // recorded is then always known.
        let objects = provisioner::tenant::list_objects(&admin)
            .await
            .map_err(crate::tenants::unavailable_server)?;
        let known: HashSet<uuid::Uuid> = catalog::tenants::known_on_server(&platform.db, server_id)
            .await?
            .into_iter()
            .collect();
        let known_warm: HashSet<String> = catalog::warm::names(&platform.db, server_id)
            .await?
            .into_iter()
            .collect();
        let unknown_warm: Vec<&provisioner::DatabaseName> = objects
            .databases
            .iter()
            .filter(|database| database.is_warm() && !known_warm.contains(database.as_str()))
            .collect();
        if !unknown_warm.is_empty() {
            // A warm database taken by a tenant meanwhile was renamed before its row went:
            // only what is still there under its warm name is an orphan.
            let still_there = provisioner::tenant::list_objects(&admin)
                .await
                .map_err(crate::tenants::unavailable_server)?;
            for warm in unknown_warm
                .into_iter()
                .filter(|warm| still_there.databases.contains(warm))
            {
                tracing::warn!(%server_id, database = %warm, "job: dropping a warm database the catalog does not know");
                provisioner::tenant::drop_database(&admin, warm)
                    .await
                    .map_err(crate::tenants::unavailable_server)?;
            }
        }
        let orphans: HashSet<TenantId> = objects
            .databases
            .iter()
            .filter_map(provisioner::DatabaseName::tenant)
            .chain(
                objects
                    .roles
                    .iter()
                    .filter_map(provisioner::RoleName::tenant),
            )
            .filter(|tenant| !known.contains(&tenant.0))
            .collect();
        for tenant in orphans {
            tracing::warn!(%server_id, tenant_id = %tenant, "job: dropping objects the catalog does not know");
            provisioner::tenant::drop_tenant(&admin, tenant)
                .await
                .map_err(crate::tenants::unavailable_server)?;
        }
        // A known tenant's database that is not the one it uses: left by a restore that
        // failed or whose old database could not be dropped (restores in progress aside).
        // Restores first: one that switches its tenant between the two reads is then seen
        // either still restoring or already in use, never neither. A restore whose
        // process died (its tenant's lock is free) is closed and its database dropped.
        reclaim_dead_restores(platform, &admin, server_id).await?;
        let restoring: HashSet<String> =
            catalog::backups::restoring_on_server(&platform.db, server_id)
                .await?
                .into_iter()
                .collect();
        let in_use: HashSet<String> =
            catalog::tenants::databases_on_server(&platform.db, server_id)
                .await?
                .into_iter()
                .collect();
        for database in objects.databases.iter().filter(|database| {
            database
                .tenant()
                .is_some_and(|tenant| known.contains(&tenant.0))
                && !in_use.contains(database.as_str())
                && !restoring.contains(database.as_str())
        }) {
            tracing::warn!(%server_id, %database, "job: dropping a tenant database no longer in use");
            provisioner::tenant::drop_database(&admin, database)
                .await
                .map_err(crate::tenants::unavailable_server)?;
        }
    }
    Ok(())
}
