//! `migrate run`: one run at a time (a session advisory lock on the catalog), templates
//! first so new tenants are born current, then warm-pool databases, then tenants with a
//! global and a per-server concurrency limit; every database's outcome goes to the ledger.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::ServerAddress;
use catalog::fleet::{Run, RunOutcome};
use serde::Serialize;
use tenancy_core::{RunId, ServerId};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::items::{migrate_template, migrate_tenant, migrate_warm};
use super::{Plan, PlanItem, plan};
use crate::error::OpsError;
use crate::locks::{LockKey, SessionLock};
use crate::platform::Platform;

#[derive(Debug, Clone, Serialize)]
pub struct RunOptions {
    /// Tenant databases migrated at once, over all servers.
    pub concurrency: usize,
    /// Tenant databases migrated at once on one server.
    pub per_server: usize,
    /// Only these tenants (slugs); empty: all.
    pub tenants: Vec<String>,
    /// Migrate this many tenants first; if any fails, touch no other tenant.
    pub canary: usize,
    /// Go on past failed tenants (otherwise: launch no new tenant after the first failure).
    pub continue_on_error: bool,
    /// The longest a step waits for a lock on a tenant's table.
    #[serde(with = "humantime_serde_ms")]
    pub lock_timeout: Duration,
    /// Who runs it (user@host pid), for the run's row and for a refused second run.
    pub started_by: String,
}

mod humantime_serde_ms {
    pub fn serialize<S: serde::Serializer>(
        value: &std::time::Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{}", busy_message(.0))]
    Busy(Option<Run>),
    #[error("no migratable tenant with slug {}", .0.join(", "))]
    UnknownTenants(Vec<String>),
    #[error(transparent)]
    Api(#[from] OpsError),
    #[error("the catalog: {0}")]
    Catalog(#[from] sqlx::Error),
}

fn busy_message(holder: &Option<Run>) -> String {
    match holder {
        Some(run) => format!(
            "another migration run holds the lock: run {} by {}, started {}",
            run.id,
            run.started_by,
            run.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => "another migration run holds the lock".to_owned(),
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every database was current already; nothing was opened.
    NothingToDo,
    Succeeded,
    /// Some database failed (see the items).
    Failed,
    /// Stopped by the operator (Ctrl-C): what was in flight finished and is recorded.
    Stopped,
}

impl Outcome {
    fn ledger_label(self) -> RunOutcome {
        match self {
            Self::NothingToDo | Self::Succeeded => RunOutcome::Succeeded,
            Self::Failed => RunOutcome::Failed,
            Self::Stopped => RunOutcome::Stopped,
        }
    }
}

/// What happened to one database.
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    pub kind: &'static str,
    pub slug: Option<String>,
    pub server: String,
    pub database: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub applied_steps: usize,
    pub succeeded: bool,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: Option<RunId>,
    pub target_version: i64,
    pub outcome: Outcome,
    /// The canary tenants failed and no other tenant was touched.
    pub canary_failed: bool,
    /// Runs found dead (their process killed) and closed by this one.
    pub interrupted_runs: Vec<RunId>,
    pub succeeded: usize,
    pub failed: usize,
    /// Tenants left for a later run (after a failure, or Ctrl-C).
    pub not_started: Vec<String>,
    pub items: Vec<ItemResult>,
    pub elapsed_ms: u64,
}

/// Progress, for a bar or log lines.
#[derive(Debug, Clone)]
pub enum Event {
    /// The work is known: this many databases.
    Planned {
        total: usize,
    },
    Done(ItemResult),
}

/// Runs a migration of the fleet. `stop` turning true (Ctrl-C) stops launching new
/// databases; those in flight finish and are recorded.
pub async fn run(
    platform: &Platform,
    options: &RunOptions,
    stop: watch::Receiver<bool>,
    progress: impl Fn(Event) + Send + Sync + 'static,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let Some(lock) = SessionLock::try_take(&platform.db, LockKey::MigrationRun).await? else {
        let holder = catalog::fleet::running(&platform.db).await?;
        return Err(RunError::Busy(holder));
    };
    let result = run_locked(platform, options, stop, progress, started).await;
    lock.release().await;
    result
}

async fn run_locked(
    platform: &Platform,
    options: &RunOptions,
    stop: watch::Receiver<bool>,
    progress: impl Fn(Event) + Send + Sync + 'static,
    started: Instant,
) -> Result<RunReport, RunError> {
    let interrupted_runs = catalog::fleet::close_interrupted(&platform.db).await?;
    for id in &interrupted_runs {
        tracing::warn!(run = %id, "closed a migration run whose process died");
    }
    let plan: Plan = plan(platform, &options.tenants).await?;
    if !plan.unknown_tenants.is_empty() {
        return Err(RunError::UnknownTenants(plan.unknown_tenants));
    }
    let mut report = RunReport {
        run_id: None,
        target_version: plan.target_version,
        outcome: Outcome::NothingToDo,
        canary_failed: false,
        interrupted_runs,
        succeeded: 0,
        failed: 0,
        not_started: Vec::new(),
        items: Vec::new(),
        elapsed_ms: 0,
    };
    if plan.is_empty() {
        report.elapsed_ms = elapsed_ms(started);
        return Ok(report);
    }
    let run_id = catalog::fleet::start_run(
        &platform.db,
        plan.target_version,
        &options.started_by,
        &serde_json::to_value(options).unwrap_or_default(),
    )
    .await?;
    report.run_id = Some(run_id);
    tracing::info!(
        run = %run_id,
        target = plan.target_version,
        "migration run started"
    );
    progress(Event::Planned {
        total: plan.templates.len() + plan.warm.len() + plan.tenants.len(),
    });
    let progress = Arc::new(progress);
    let context = Context {
        platform: platform.clone(),
        run_id,
        lock_timeout: options.lock_timeout,
    };
    let result = phases(&context, options, plan, stop, &progress, &mut report).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            // The catalog failed under us: record what we can and say so.
            let _ = catalog::fleet::finish_run(&platform.db, run_id, RunOutcome::Failed).await;
            return Err(error);
        }
    };
    report.outcome = outcome;
    report.succeeded = report.items.iter().filter(|item| item.succeeded).count();
    report.failed = report.items.len() - report.succeeded;
    catalog::fleet::finish_run(&platform.db, run_id, outcome.ledger_label()).await?;
    report.elapsed_ms = elapsed_ms(started);
    tracing::info!(
        run = %run_id,
        ?outcome,
        succeeded = report.succeeded,
        failed = report.failed,
        "migration run finished"
    );
    Ok(report)
}

#[derive(Clone)]
pub(super) struct Context {
    pub(super) platform: Platform,
    pub(super) run_id: RunId,
    pub(super) lock_timeout: Duration,
}

async fn phases(
    context: &Context,
    options: &RunOptions,
    plan: Plan,
    stop: watch::Receiver<bool>,
    progress: &Arc<impl Fn(Event) + Send + Sync + 'static>,
    report: &mut RunReport,
) -> Result<Outcome, RunError> {
    let servers = plan.templates.iter().chain(&plan.warm).chain(&plan.tenants);
    let addresses =
        Arc::new(super::addresses(&context.platform, servers.map(|item| item.server_id)).await?);

    // Templates, one server after the other: a failure here ends the run, since every
    // tenant created meanwhile would be born at the old version.
    for item in &plan.templates {
        let result = migrate_template(context, &addresses[&item.server_id], item).await?;
        let failed = !result.succeeded;
        progress(Event::Done(result.clone()));
        report.items.push(result);
        if failed {
            report.not_started = slugs(&plan.tenants);
            return Ok(Outcome::Failed);
        }
    }
    // Warm-pool databases: disposable, so one that fails is dropped (the pool refills
    // from the migrated template) and the run goes on.
    for item in &plan.warm {
        if let Some(result) = migrate_warm(context, &addresses[&item.server_id], item).await? {
            progress(Event::Done(result.clone()));
            report.items.push(result);
        }
    }

    let canary = options.canary.min(plan.tenants.len());
    let (first, rest) = plan.tenants.split_at(canary);
    let mut outcome = Outcome::Succeeded;
    if canary > 0 {
        let batch = run_batch(context, options, &addresses, first, &stop, progress, true).await?;
        let canary_failed = batch.failed;
        report.items.extend(batch.results);
        if canary_failed {
            report.canary_failed = true;
            report.not_started = slugs(rest);
            return Ok(Outcome::Failed);
        }
        if batch.stopped {
            report.not_started = slugs(rest);
            return Ok(Outcome::Stopped);
        }
    }
    let batch = run_batch(
        context,
        options,
        &addresses,
        rest,
        &stop,
        progress,
        options.continue_on_error,
    )
    .await?;
    if batch.stopped {
        outcome = Outcome::Stopped;
    }
    if batch.failed {
        outcome = Outcome::Failed;
    }
    report.items.extend(batch.results);
    report.not_started = batch.not_started;
    Ok(outcome)
}

fn slugs(items: &[PlanItem]) -> Vec<String> {
    items.iter().filter_map(|item| item.slug.clone()).collect()
}

struct Batch {
    results: Vec<ItemResult>,
    failed: bool,
    stopped: bool,
    not_started: Vec<String>,
}

/// Migrates tenants, at most `concurrency` at once and `per_server` on one server. With
/// `keep_going` false, the first failure stops new launches; in-flight tenants finish.
async fn run_batch(
    context: &Context,
    options: &RunOptions,
    addresses: &Arc<HashMap<ServerId, ServerAddress>>,
    items: &[PlanItem],
    stop: &watch::Receiver<bool>,
    progress: &Arc<impl Fn(Event) + Send + Sync + 'static>,
    keep_going: bool,
) -> Result<Batch, RunError> {
    let global = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut per_server: HashMap<ServerId, Arc<Semaphore>> = HashMap::new();
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks: JoinSet<Result<ItemResult, RunError>> = JoinSet::new();
    let mut results = Vec::new();
    let mut not_started = Vec::new();
    let mut stopped = false;
    for (index, item) in items.iter().enumerate() {
        let server = per_server
            .entry(item.server_id)
            .or_insert_with(|| Arc::new(Semaphore::new(options.per_server.max(1))))
            .clone();
        let server_permit = server.acquire_owned().await.map_err(internal)?;
        let permit = global.clone().acquire_owned().await.map_err(internal)?;
        // Collect what finished meanwhile (and surface catalog errors early).
        while let Some(joined) = tasks.try_join_next() {
            results.push(joined.map_err(internal)??);
        }
        let halted = failed.load(Ordering::SeqCst) && !keep_going;
        if halted || *stop.borrow() {
            stopped |= *stop.borrow();
            not_started = slugs(&items[index..]);
            break;
        }
        let context = context.clone();
        let item = item.clone();
        let addresses = addresses.clone();
        let failed = failed.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let result = migrate_tenant(&context, &addresses[&item.server_id], &item).await;
            // Before the permits go: the launcher, woken by them, must see the failure.
            if !result.as_ref().is_ok_and(|result| result.succeeded) {
                failed.store(true, Ordering::SeqCst);
            }
            drop((permit, server_permit));
            let result = result?;
            progress(Event::Done(result.clone()));
            Ok(result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.map_err(internal)??);
    }
    Ok(Batch {
        failed: results.iter().any(|result| !result.succeeded),
        results,
        stopped,
        not_started,
    })
}

fn internal(error: impl std::error::Error + Send + Sync + 'static) -> RunError {
    RunError::Api(OpsError::Internal(anyhow::Error::new(error)))
}

pub(super) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
