//! Background jobs of the control plane. Each job runs in a task of its own on its own
//! schedule (and once at start-up, so a restart after a crash finishes what the crash
//! interrupted): a failure or a slow round of one never delays or stops another. Across
//! several control planes on one catalog, each job runs on one of them at a time: a round
//! starts only under the job's catalog advisory lock (leadership per round; a replica that
//! dies releases it with its connection), and every round reads the catalog afresh, so
//! work done by one replica is not done again by another.
//!
//! - `provisioning`: finish provisionings that no worker holds (their worker died);
//! - `deletions`: drop tenants whose deletion grace period is over (final backup first);
//! - `trials`: suspend tenants whose trial has ended;
//! - `sweep`: databases and roles of ours that the catalog does not know (see [`crate::sweep`]),
//!   restores whose process died, databases kept after a restore whose time is up;
//! - `storage`: sample every tenant database's size (on a slower schedule of its own);
//! - `warm-pools`: keep each server's warm databases cloned ahead;
//! - `backups`: scheduled backups and retention;
//! - `migration-runs`: close fleet migration runs whose process died and lift their marks.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use provisioner::jobs::{self as ops, JOBS, job_lock_key};
use provisioner::locks::SessionLock;
use provisioner::platform::Platform;

use crate::metrics::Metrics;

/// The running jobs; dropping this does not stop them, [`Jobs::stop`] does.
pub struct Jobs(Vec<JoinHandle<()>>);

impl Jobs {
    pub fn stop(self) {
        for task in self.0 {
            task.abort();
        }
    }
}

/// Starts every job, each every `interval`; the storage sampling every `storage_interval`
/// (at least `interval`).
pub fn spawn(
    platform: Platform,
    metrics: Arc<Metrics>,
    interval: Duration,
    storage_interval: Duration,
) -> Jobs {
    Jobs(
        JOBS.iter()
            .enumerate()
            .map(|(index, name)| {
                let platform = platform.clone();
                let metrics = metrics.clone();
                let every = if *name == "storage" {
                    storage_interval.max(interval)
                } else {
                    interval
                };
                tokio::spawn(async move {
                    let mut ticker = tokio::time::interval(every);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticker.tick().await;
                        // Each round in a task of its own: a round that panics is logged
                        // and the job runs again next round, rather than never again.
                        let platform = platform.clone();
                        let metrics = metrics.clone();
                        let round = tokio::spawn(async move {
                            run_job(&platform, &metrics, index, name).await;
                        });
                        if let Err(error) = round.await
                            && error.is_panic()
                        {
                            tracing::error!(job = name, "job round panicked; retried next round");
                        }
                    }
                })
            })
            .collect(),
    )
}

/// One round of one job, if no other replica is running it; errors are logged and the job
/// runs again next round.
async fn run_job(platform: &Platform, metrics: &Metrics, index: usize, name: &'static str) {
    let lock = match SessionLock::try_take(&platform.db, job_lock_key(index)).await {
        Ok(Some(lock)) => lock,
        Ok(None) => return, // Another control plane runs this job now.
        Err(error) => {
            tracing::warn!(job = name, %error, "job: the catalog is unreachable");
            return;
        }
    };
    let span = tracing::info_span!("job", job = name);
    let result = tracing::Instrument::instrument(body(platform, metrics, name), span).await;
    if let Err(error) = result {
        tracing::warn!(job = name, error = %error, "job round failed; retried next round");
    }
    lock.release().await;
}

async fn body(platform: &Platform, metrics: &Metrics, name: &str) -> anyhow::Result<()> {
    match name {
        "provisioning" => ops::resume_provisioning(platform).await?,
        "deletions" => ops::drop_due(platform).await?,
        "trials" => ops::suspend_expired_trials(platform).await?,
        "sweep" => {
            if let Some(orphans) = ops::sweep(platform).await? {
                metrics.record_orphans(&orphans);
            }
        }
        "storage" => ops::sample_storage(platform).await?,
        "warm-pools" => ops::refill_warm_pools(platform).await?,
        "backups" => ops::scheduled_backups(platform).await?,
        "migration-runs" => ops::close_dead_migration_runs(platform).await?,
        _ => {}
    }
    Ok(())
}
