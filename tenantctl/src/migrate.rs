//! `tenantctl migrate status|plan|run`: the fleet migrations of the control plane's
//! `migrations` module, with a progress bar on a terminal and plain lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};
use provisioner::migrations::{self, Event, ItemResult, Outcome, RunError, RunOptions};

use crate::output::{cell, print};
use crate::platform::PlatformArgs;

#[derive(Debug, clap::Subcommand)]
pub enum MigrateCommand {
    /// Each tenant's schema version, pending steps and last error, from the catalog's
    /// ledger (no tenant database is opened unless --verify).
    Status {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Also open every tenant database and report where its own migration history
        /// differs from the catalog.
        #[arg(long)]
        verify: bool,
        /// Tenant databases read at once by --verify.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        verify_concurrency: u16,
    },
    /// What a run would migrate, where, in order (changes nothing).
    Plan {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Only this tenant (repeatable).
        #[arg(long = "tenant", value_name = "SLUG")]
        tenants: Vec<String>,
    },
    /// Apply pending steps: templates first, then warm-pool databases, then tenants.
    Run {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Tenant databases migrated at once over all servers [default: 2 per server].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: Option<u16>,
        /// Tenant databases migrated at once on one server.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        per_server: u16,
        /// Only this tenant (repeatable).
        #[arg(long = "tenant", value_name = "SLUG")]
        tenants: Vec<String>,
        /// Migrate this many tenants first; if any of them fails, stop before touching
        /// another tenant.
        #[arg(long, default_value_t = 0)]
        canary: usize,
        /// Go on after a tenant fails (otherwise no tenant is started after the first
        /// failure; those in flight finish).
        #[arg(long)]
        continue_on_error: bool,
        /// The longest a step waits for a lock held by the tenant's own transactions.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        lock_timeout: Duration,
    },
}

pub async fn run(command: MigrateCommand, json: bool) -> anyhow::Result<()> {
    match command {
        MigrateCommand::Status {
            platform,
            verify,
            verify_concurrency,
        } => {
            let platform = platform.connect().await?;
            status(&platform, json, verify.then_some(verify_concurrency)).await
        }
        MigrateCommand::Plan { platform, tenants } => {
            let platform = platform.connect().await?;
            let plan = migrations::plan(&platform, &tenants).await?;
            if !plan.unknown_tenants.is_empty() {
                return Err(anyhow!(
                    "no migratable tenant with slug {}",
                    plan.unknown_tenants.join(", ")
                ));
            }
            let rows = plan
                .templates
                .iter()
                .chain(&plan.warm)
                .chain(&plan.tenants)
                .map(|item| {
                    vec![
                        item.kind.to_owned(),
                        cell(item.slug.clone()),
                        item.server.clone(),
                        item.database.clone(),
                        cell(item.from_version),
                        item.steps
                            .iter()
                            .map(|step| format!("V{}__{}", step.version, step.name))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .collect();
            print(
                json,
                &plan,
                &["KIND", "TENANT", "SERVER", "DATABASE", "FROM", "STEPS"],
                rows,
            )?;
            if !json {
                println!(
                    "target version {}: {} template(s), {} warm database(s), {} tenant(s) to migrate",
                    plan.target_version,
                    plan.templates.len(),
                    plan.warm.len(),
                    plan.tenants.len()
                );
            }
            Ok(())
        }
        MigrateCommand::Run {
            platform,
            concurrency,
            per_server,
            tenants,
            canary,
            continue_on_error,
            lock_timeout,
        } => {
            let platform = platform.connect().await?;
            let servers = catalog::servers::list(&platform.db).await?.len().max(1);
            let options = RunOptions {
                concurrency: concurrency.map_or(2 * servers, usize::from),
                per_server: usize::from(per_server),
                tenants,
                canary,
                continue_on_error,
                lock_timeout,
                started_by: started_by(),
            };
            run_migrations(&platform, &options, json).await
        }
    }
}

async fn status(
    platform: &provisioner::Platform,
    json: bool,
    verify: Option<u16>,
) -> anyhow::Result<()> {
    let status = migrations::status(platform).await?;
    let verified = match verify {
        Some(concurrency) => Some(migrations::verify(platform, usize::from(concurrency)).await?),
        None => None,
    };
    if json {
        let mut value = serde_json::to_value(&status)?;
        if let (Some(verified), Some(object)) = (&verified, value.as_object_mut()) {
            object.insert("verify".to_owned(), serde_json::to_value(verified)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let rows = status
            .tenants
            .iter()
            .map(|tenant| {
                vec![
                    tenant.slug.clone(),
                    tenant.server.clone(),
                    cell(tenant.applied_version),
                    serde_json::to_value(tenant.state)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    tenant
                        .pending
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    cell(tenant.last_error.clone()),
                ]
            })
            .collect();
        print(
            false,
            &(),
            &[
                "TENANT",
                "SERVER",
                "VERSION",
                "STATE",
                "PENDING",
                "LAST ERROR",
            ],
            rows,
        )?;
        let summary = &status.summary;
        println!(
            "target version {} ({}): {} tenants: {} current, {} pending, {} failed, {} migrating, {} ahead; \
             {} template(s) and {} warm database(s) pending",
            status.target_version,
            status.migrations_source,
            summary.tenants,
            summary.current,
            summary.pending,
            summary.failed,
            summary.migrating,
            summary.ahead,
            summary.templates_pending,
            summary.warm_pending
        );
        if let Some(verified) = &verified {
            for drift in &verified.drift {
                println!("drift: {}: {}", drift.slug, drift.problems.join("; "));
            }
            println!(
                "verified {} tenant databases: {} drifted",
                verified.checked,
                verified.drift.len()
            );
        }
    }
    match verified {
        Some(verified) if !verified.drift.is_empty() => Err(anyhow!(
            "{} tenant database(s) differ from the catalog",
            verified.drift.len()
        )),
        _ => Ok(()),
    }
}

async fn run_migrations(
    platform: &provisioner::Platform,
    options: &RunOptions,
    json: bool,
) -> anyhow::Result<()> {
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    let interrupt = tokio::spawn(async move {
        tenancy_core::shutdown::signal().await;
        eprintln!("stopping: no new tenant is started; waiting for those in flight");
        let _ = stop_sender.send(true);
    });
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} databases  {elapsed_precise}  eta {eta}  {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let progress_bar = bar.clone();
    let result = migrations::run(platform, options, stop, move |event| match event {
        Event::Planned { total } => {
            if let Some(bar) = &progress_bar {
                bar.set_length(u64::try_from(total).unwrap_or(u64::MAX));
            }
        }
        Event::Done(item) => {
            let line = describe(&item);
            match &progress_bar {
                Some(bar) => {
                    bar.inc(1);
                    if item.succeeded {
                        bar.set_message(line);
                    } else {
                        bar.println(line);
                    }
                }
                None => eprintln!("{line}"),
            }
        }
    })
    .await;
    interrupt.abort();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = match result {
        Ok(report) => report,
        Err(RunError::Busy(holder)) => return Err(anyhow!("{}", RunError::Busy(holder))),
        Err(other) => return Err(other.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for id in &report.interrupted_runs {
            println!("run {id} had died mid-way; it is marked interrupted and its work resumed");
        }
        match report.outcome {
            Outcome::NothingToDo => println!(
                "nothing to do: every database is at version {} (from the ledger, in {} ms)",
                report.target_version, report.elapsed_ms
            ),
            _ => {
                for item in report.items.iter().filter(|item| !item.succeeded) {
                    println!("{}", describe(item));
                }
                println!(
                    "run {}: {} succeeded, {} failed, {} not started, in {:.1} s{}",
                    report
                        .run_id
                        .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                    report.succeeded,
                    report.failed,
                    report.not_started.len(),
                    Duration::from_millis(report.elapsed_ms).as_secs_f64(),
                    if report.canary_failed {
                        " (the canary failed: no other tenant was touched)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    match report.outcome {
        Outcome::NothingToDo | Outcome::Succeeded => Ok(()),
        Outcome::Failed if report.canary_failed => Err(anyhow!(
            "the canary failed; the rollout stopped before any other tenant"
        )),
        Outcome::Failed if options.continue_on_error => {
            Err(anyhow!("{} database(s) failed to migrate", report.failed))
        }
        Outcome::Failed => Err(anyhow!(
            "stopped at the first failure: {} database(s) failed, {} tenant(s) not started (re-run, or pass --continue-on-error)",
            report.failed,
            report.not_started.len()
        )),
        Outcome::Stopped => Err(anyhow!(
            "stopped by signal: {} tenant(s) not started; re-run to finish",
            report.not_started.len()
        )),
    }
}

fn describe(item: &ItemResult) -> String {
    let what = match &item.slug {
        Some(slug) => format!("{} {slug} on {}", item.kind, item.server),
        None => format!("{} {} on {}", item.kind, item.database, item.server),
    };
    match &item.error {
        None => format!(
            "ok    {what}: {} -> {} ({} step(s), {} ms)",
            cell(item.from_version),
            cell(item.to_version),
            item.applied_steps,
            item.elapsed_ms
        ),
        Some(error) => format!("FAIL  {what}: {error}"),
    }
}

fn started_by() -> String {
    let user = crate::admin::operator().name;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{user}@{host} pid {}", std::process::id())
}
