//! `tenantctl backup create|list|verify|restore|prune`, over the control plane's `backups` module.

use anyhow::anyhow;
use provisioner::backups::{self, Trigger};
use provisioner::wire::Backup;

use crate::output::{cell, print};
use crate::platform::PlatformArgs;

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Back up a tenant (or every active and suspended tenant) to S3.
    Create {
        #[command(flatten)]
        platform: PlatformArgs,
        /// The tenant to back up.
        #[arg(
            long,
            value_name = "SLUG",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        tenant: Option<String>,
        /// Every active and suspended tenant.
        #[arg(long)]
        all: bool,
        /// Backups taken at once with --all.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
    },
    /// Complete backups, newest first.
    List {
        #[command(flatten)]
        platform: PlatformArgs,
        #[arg(long, value_name = "SLUG")]
        tenant: Option<String>,
    },
    /// Re-read a backup from S3: size, SHA-256, and `pg_restore --list`.
    Verify {
        #[command(flatten)]
        platform: PlatformArgs,
        id: tenancy_core::BackupId,
    },
    /// Restore a backup over its tenant: into a new database, then switch the tenant to it
    /// and drop the old one. The object is checked whole before anything is created.
    Restore {
        #[command(flatten)]
        platform: PlatformArgs,
        id: tenancy_core::BackupId,
        /// The tenant you mean to restore (refused unless the backup is this tenant's).
        #[arg(long, value_name = "SLUG", conflicts_with = "as_slug")]
        tenant: Option<String>,
        /// Restore into a new tenant with this slug instead (on the same plan); the
        /// backup's tenant is left as it is.
        #[arg(long = "as", value_name = "NEW_SLUG")]
        as_slug: Option<String>,
        /// The new tenant's name, with --as [default: "<name> (restored)"].
        #[arg(long, requires = "as_slug")]
        name: Option<String>,
    },
    /// Delete backups older than their plan's retention (never a tenant's newest).
    Prune {
        #[command(flatten)]
        platform: PlatformArgs,
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

const HEADERS: [&str; 6] = ["ID", "TENANT", "TRIGGER", "COMPLETED", "BYTES", "SCHEMA"];

fn row(backup: &Backup) -> Vec<String> {
    vec![
        backup.id.to_string(),
        backup.tenant.clone(),
        backup.trigger.to_string(),
        cell(
            backup
                .completed_at
                .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string()),
        ),
        cell(backup.bytes),
        cell(backup.schema_version),
    ]
}

pub async fn run(command: BackupCommand, json: bool) -> anyhow::Result<()> {
    let requested_by = crate::admin::operator().name;
    match command {
        BackupCommand::Create {
            platform,
            tenant,
            all,
            concurrency,
        } => {
            let platform = platform.connect().await?;
            let slugs = match tenant {
                Some(slug) => vec![slug],
                None if all => catalog::fleet::tenants(&platform.db)
                    .await?
                    .into_iter()
                    .map(|tenant| tenant.slug)
                    .collect(),
                None => return Err(anyhow!("give --tenant SLUG or --all")),
            };
            let permits =
                std::sync::Arc::new(tokio::sync::Semaphore::new(usize::from(concurrency)));
            let mut tasks = tokio::task::JoinSet::new();
            for slug in slugs {
                let permit = permits.clone().acquire_owned().await?;
                let platform = platform.clone();
                let requested_by = requested_by.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let result =
                        backups::create(&platform, &slug, Trigger::Manual, &requested_by).await;
                    (slug, result)
                });
            }
            let mut made = Vec::new();
            let mut failures = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                match joined? {
                    (_, Ok(backup)) => made.push(Backup::from(backup)),
                    (slug, Err(error)) => {
                        eprintln!("FAIL  {slug}: {error}");
                        failures.push(slug);
                    }
                }
            }
            made.sort_by(|a, b| a.tenant.cmp(&b.tenant));
            let rows = made.iter().map(row).collect();
            print(json, &made, &HEADERS, rows)?;
            if failures.is_empty() {
                Ok(())
            } else {
                Err(anyhow!(
                    "{} of {} backups failed: {}",
                    failures.len(),
                    failures.len() + made.len(),
                    failures.join(", ")
                ))
            }
        }
        BackupCommand::List { platform, tenant } => {
            let platform = platform.connect().await?;
            let items: Vec<Backup> = backups::list(&platform, tenant.as_deref())
                .await?
                .into_iter()
                .map(Backup::from)
                .collect();
            let rows = items.iter().map(row).collect();
            print(json, &items, &HEADERS, rows)
        }
        BackupCommand::Restore {
            platform,
            id,
            tenant,
            as_slug,
            name,
        } => {
            let platform = platform.connect().await?;
            let actor = crate::admin::operator();
            let restored = match as_slug {
                Some(slug) => backups::restore_as(&platform, &actor, id, &slug, name).await?,
                None => backups::restore(&platform, &actor, id, tenant.as_deref()).await?,
            };
            print(
                json,
                &restored,
                &["TENANT", "BACKUP", "DATABASE", "REPLACED", "SCHEMA"],
                vec![vec![
                    restored.tenant.clone(),
                    restored.backup_id.to_string(),
                    restored.database.clone(),
                    restored.previous_database.clone(),
                    cell(restored.schema_version),
                ]],
            )
        }
        BackupCommand::Prune { platform, dry_run } => {
            let platform = platform.connect().await?;
            let pruned: Vec<Backup> = backups::prune(&platform, dry_run)
                .await?
                .into_iter()
                .map(Backup::from)
                .collect();
            let rows = pruned.iter().map(row).collect();
            print(json, &pruned, &HEADERS, rows)?;
            if !json {
                println!(
                    "{} backup(s) {}",
                    pruned.len(),
                    if dry_run {
                        "would be deleted"
                    } else {
                        "deleted"
                    }
                );
            }
            Ok(())
        }
        BackupCommand::Verify { platform, id } => {
            let platform = platform.connect().await?;
            let verified = backups::verify(&platform, id).await?;
            print(
                json,
                &verified,
                &["ID", "BYTES", "SHA-256", "ENTRIES"],
                vec![vec![
                    verified.id.to_string(),
                    verified.bytes.to_string(),
                    verified.sha256.clone(),
                    verified.entries.to_string(),
                ]],
            )
        }
    }
}
