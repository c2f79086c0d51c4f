//! `migrate status --verify`: open every tenant database and compare its own refinery
//! history with the catalog's record and with this build's migrations.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::internal;
use crate::error::OpsResult;
use crate::platform::Platform;

/// A tenant whose database does not match what the catalog says.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub slug: String,
    pub server: String,
    pub catalog_version: Option<i64>,
    /// None when the database could not be read.
    pub database_version: Option<i64>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub checked: usize,
    pub drift: Vec<Drift>,
}

/// Reads every migrated tenant's history, `concurrency` databases at a time.
pub async fn verify(platform: &Platform, concurrency: usize) -> OpsResult<VerifyReport> {
    let tenants = catalog::fleet::tenants(&platform.db).await?;
    let addresses =
        Arc::new(super::addresses(platform, tenants.iter().map(|tenant| tenant.server_id)).await?);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let checked = tenants.len();
    for tenant in tenants {
        let permit = permits.clone().acquire_owned().await.map_err(internal)?;
        let addresses = addresses.clone();
        let set = platform.settings.migrations.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut problems = Vec::new();
            let mut database_version = None;
            let applied = match addresses[&tenant.server_id]
                .connect(&tenant.database_name)
                .await
            {
                Ok(client) => set
                    .applied_steps(&client)
                    .await
                    .map_err(|error| crate::describe(&error)),
                Err(error) => Err(error.to_string()),
            };
            match applied {
                Ok(steps) => {
                    database_version = steps.iter().map(|step| step.version).max();
                    if database_version != tenant.schema_version {
                        problems.push(format!(
                            "the catalog says version {}, the database's history says {}",
                            show(tenant.schema_version),
                            show(database_version)
                        ));
                    }
                    for step in steps.iter().filter(|step| !step.matches_set) {
                        problems.push(format!(
                            "step V{}__{} in the database is not this build's",
                            step.version, step.name
                        ));
                    }
                }
                Err(error) => problems.push(format!("could not read the history: {error}")),
            }
            (!problems.is_empty()).then_some(Drift {
                slug: tenant.slug,
                server: tenant.server,
                catalog_version: tenant.schema_version,
                database_version,
                problems,
            })
        });
    }
    let mut drift = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        drift.extend(joined.map_err(internal)?);
    }
    drift.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(VerifyReport { checked, drift })
}

fn show(version: Option<i64>) -> String {
    version.map_or_else(|| "none".to_owned(), |version| version.to_string())
}
