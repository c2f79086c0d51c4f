//! The bodies of the background jobs; the control plane schedules them (each in a task of
//! its own, under its own catalog advisory lock: [`job_lock_key`]).
//!
//! - `provisioning`: finish provisionings that no worker holds (their worker died);
//! - `deletions`: drop tenants whose deletion grace period is over (final backup first);
//! - `trials`: suspend tenants whose trial has ended;
//! - `sweep`: databases and roles of ours that the catalog does not know (see
//!   [`crate::sweep`]), restores whose process died, databases kept after a restore whose
//!   time is up;
//! - `storage`: sample every tenant database's size;
//! - `warm-pools`: keep each server's warm databases cloned ahead;
//! - `backups`: scheduled backups and retention;
//! - `migration-runs`: close fleet migration runs whose process died and lift their marks.

use catalog::tenants::Status;

use crate::error::OpsResult;
use crate::locks::{LockKey, SessionLock};
use crate::platform::Platform;
use crate::tenants::provisioning::{self, Outcome, system_actor};

/// The jobs, by name, each with its own advisory lock key.
pub const JOBS: [&str; 8] = [
    "provisioning",
    "deletions",
    "trials",
    "sweep",
    "storage",
    "warm-pools",
    "backups",
    "migration-runs",
];

/// The catalog advisory lock that makes one replica at a time run a job.
pub fn job_lock_key(index: usize) -> LockKey {
    LockKey::Job(index)
}

/// The sweep's lock: held by whatever must not race a sweep (an adoption).
pub fn sweep_lock_key() -> LockKey {
    job_lock_key(JOBS.iter().position(|job| *job == "sweep").unwrap_or(0))
}

/// A fleet migration run holds the run lock for its whole life: when the lock is free, a
/// run still `running` belongs to a process that died. Close it and lift its marks, so no
/// tenant stays `503 tenant_migrating` until somebody runs `migrate` again.
pub async fn close_dead_migration_runs(platform: &Platform) -> Result<(), sqlx::Error> {
    if !catalog::fleet::has_running(&platform.db).await? {
        return Ok(());
    }
    let Some(lock) = SessionLock::try_take(&platform.db, LockKey::MigrationRun).await? else {
        return Ok(()); // A live run.
    };
    let closed = catalog::fleet::close_interrupted(&platform.db).await;
    lock.release().await;
    for run in closed? {
        tracing::warn!(
            run = %run,
            "job: a migration run whose process died is closed; its tenants are served again"
        );
    }
    Ok(())
}

/// Backs up the tenants whose last backup is older than their plan's interval (one after the other:
/// a round never floods the servers), then applies the plans' retention.
pub async fn scheduled_backups(platform: &Platform) -> Result<(), crate::backups::BackupError> {
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

/// Days of daily size samples kept (the portal's storage chart).
pub const STORAGE_HISTORY_DAYS: i32 = 90;

/// Samples every tenant database's size; a tenant over its plan's storage limit is flagged
/// (the routers then refuse its writes) until it is under again.
pub async fn sample_storage(platform: &Platform) -> Result<(), crate::error::OpsError> {
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
            .map_err(|source| crate::tenants::unavailable_server(crate::ProvisionError::Database {
                action: "measure tenant databases",
                source,
            }))?;
        // A database dropped while it is measured has no size (NULL): it is left out.
        let sizes: Vec<(String, i64)> = rows
            .iter()
            .filter_map(|row| Some((row.get(0), row.get::<_, Option<i64>>(1)?)))
            .collect();
        catalog::usage::record_storage(&platform.db, server_id, &sizes).await?;
    }
    catalog::usage::prune_storage_history(&platform.db, STORAGE_HISTORY_DAYS).await?;
    Ok(())
}

/// A restore holds its tenant's advisory lock from its row to its end: a `running` row with
/// the lock free belongs to a process that died.
pub async fn reclaim_dead_restores(
    platform: &Platform,
    admin: &tokio_postgres::Client,
    server_id: tenancy_core::ServerId,
) -> Result<(), crate::error::OpsError> {
    for restore in catalog::backups::running_restores(&platform.db, server_id).await? {
        let key = LockKey::Tenant(restore.tenant_id);
        if let Some(lock) = SessionLock::try_take(&platform.db, key).await? {
            // Read again under the lock: a restore that finished (and let its lock go)
            // since the list was read has switched its tenant to this very database.
            if !catalog::backups::restore_still_running(&platform.db, restore.id).await? {
                lock.release().await;
                continue;
            }
            tracing::warn!(%server_id, restore = %restore.id, database = %restore.database_name, "job: dropping the database of a restore whose process died");
            if let Some(database) = crate::DatabaseName::parse(&restore.database_name)
                && let Err(error) =
                    crate::tenant::drop_database(admin, &database, platform.installation).await
            {
                // Not ours, or not droppable now: closed all the same; the sweep reports it.
                tracing::warn!(restore = %restore.id, %error, "job: the database of a dead restore was not dropped");
            }
            catalog::backups::fail_restore(&platform.db, restore.id, "abandoned: its process died")
                .await?;
            // Its tenant goes back to the database it had, open to it again.
            if let Some(tenant) = catalog::tenants::get(&platform.db, restore.tenant_id).await?
                && tenant.status == Status::Restoring
            {
                if let Some(database) = tenant
                    .database_name
                    .as_deref()
                    .and_then(crate::DatabaseName::parse)
                {
                    crate::tenant::open_database(admin, &database, tenant.id)
                        .await
                        .map_err(crate::tenants::unavailable_server)?;
                }
                catalog::tenants::end_restoring(&platform.db, tenant.id).await?;
            }
            lock.release().await;
        }
    }
    Ok(())
}

/// Keeps `warm_pool_size` databases cloned ahead on every server whose template is ready.
pub async fn refill_warm_pools(platform: &Platform) -> Result<(), crate::error::OpsError> {
    let target = i64::from(platform.settings.warm_pool_size);
    for server in catalog::servers::list(&platform.db).await? {
        let Some(version) = server
            .schema_version
            .filter(|_| server.status == catalog::servers::ServerStatus::Active)
        else {
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
            if let Some(database) = crate::DatabaseName::parse(&name) {
                crate::tenant::drop_database(&admin, &database, platform.installation)
                    .await
                    .map_err(crate::tenants::unavailable_server)?;
            }
            catalog::warm::forget(&platform.db, &name).await?;
        }
        for _ in 0..missing {
            let warm = crate::DatabaseName::warm();
            catalog::warm::announce(&platform.db, warm.as_str(), server.id).await?;
            crate::tenant::create_warm_database(&admin, &warm, platform.installation)
                .await
                .map_err(crate::tenants::unavailable_server)?;
            catalog::warm::mark_ready(&platform.db, warm.as_str(), version).await?;
        }
    }
    Ok(())
}

pub async fn resume_provisioning(platform: &Platform) -> Result<(), crate::error::OpsError> {
    for id in catalog::tenants::ids_with_status(&platform.db, Status::Provisioning).await? {
        match provisioning::provision(platform, id).await {
            Ok(Outcome::Active) => {
                tracing::info!(tenant_id = %id, "job: finished an interrupted provisioning")
            }
            Ok(Outcome::Failed(reason)) => {
                tracing::warn!(tenant_id = %id, %reason, "job: provisioning failed")
            }
            Ok(Outcome::Busy | Outcome::NotPending) => {}
            Err(error) => {
                tracing::warn!(tenant_id = %id, %error, "job: provisioning could not go on; retried next round")
            }
        }
    }
    Ok(())
}

/// Each due tenant on its own: one whose drop keeps failing never blocks the others.
pub async fn drop_due(platform: &Platform) -> Result<(), crate::error::OpsError> {
    for id in catalog::tenants::due_for_drop(&platform.db).await? {
        if let Err(error) = provisioning::drop_tenant(platform, id).await {
            tracing::warn!(tenant_id = %id, %error, "job: dropping a deleted tenant failed; retried next round");
        }
    }
    Ok(())
}

pub async fn suspend_expired_trials(platform: &Platform) -> Result<(), crate::error::OpsError> {
    for id in catalog::tenants::expired_trials(&platform.db).await? {
        let Some(tenant) = catalog::tenants::get(&platform.db, id).await? else {
            continue;
        };
        match crate::tenants::transition(platform, &system_actor(), &tenant.slug, Status::Suspended)
            .await
        {
            Ok(_) => tracing::info!(tenant_id = %id, "job: trial ended; tenant suspended"),
            Err(error) => {
                tracing::warn!(tenant_id = %id, %error, "job: suspending an expired trial failed")
            }
        }
    }
    Ok(())
}

/// The sweep, server by server (one pass per cluster): restores whose process died first,
/// then the objects of ours the catalog does not know; then databases kept after a restore
/// whose time is up. The orphans found are counted in the metrics.
/// Returns the orphans found, for the metrics (None when the sweep is off).
pub async fn sweep(platform: &Platform) -> OpsResult<Option<Vec<crate::sweep::Orphan>>> {
    if platform.settings.sweep.mode == crate::sweep::SweepMode::Off {
        return Ok(None);
    }
    let mut orphans = Vec::new();
    for (secret, _) in crate::sweep::servers_by_cluster(platform).await? {
        let server_id = secret.id;
        let name = secret.name.clone();
        let address = crate::servers::to_address(platform, secret)?;
        let admin = match address.connect("postgres").await {
            Ok(admin) => admin,
            Err(error) => {
                tracing::warn!(server = %name, %error, "job: server unreachable; sweep skipped");
                continue;
            }
        };
        reclaim_dead_restores(platform, &admin, server_id).await?;
        let found = crate::sweep::sweep_server(platform, &name, &admin, true).await?;
        if found.stamped > 0 || found.released > 0 {
            tracing::info!(server = %name, marked = found.stamped, released = found.released, "job: sweep marked known objects and released known quarantined ones");
        }
        orphans.extend(found.orphans);
    }
    drop_kept_databases(platform).await?;
    Ok(Some(orphans))
}

/// Databases kept after a restore are dropped once their time is up.
pub async fn drop_kept_databases(platform: &Platform) -> Result<(), crate::error::OpsError> {
    for kept in catalog::backups::kept_due(&platform.db).await? {
        let Some(database) = crate::DatabaseName::parse(&kept.database_name) else {
            continue;
        };
        let address = crate::servers::address(platform, kept.server_id).await?;
        let admin = address
            .connect("postgres")
            .await
            .map_err(crate::tenants::unavailable_server)?;
        match crate::tenant::drop_database(&admin, &database, platform.installation).await {
            Ok(()) => {
                catalog::backups::kept_dropped(&platform.db, kept.restore_id).await?;
                tracing::info!(database = %database, "job: dropped a database kept after a restore");
            }
            Err(error) => {
                tracing::warn!(database = %database, %error, "job: a database kept after a restore could not be dropped");
            }
        }
    }
    Ok(())
}
