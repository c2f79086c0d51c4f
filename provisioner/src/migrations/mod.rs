//! Fleet migrations: bring the template database of every server, the warm-pool
//! databases and every tenant database to the newest tenant schema version.
//!
//! The catalog is the source of truth for what each database is at (`tenants.schema_version`,
//! `database_servers.schema_version`, `warm_databases.schema_version`), kept true by the
//! ledger of each run; [`status`] and [`plan`] read only the catalog. [`verify`] opens every
//! tenant database and compares. [`run`] lives in `run.rs`.

mod items;
mod run;
mod verify;

use std::collections::BTreeMap;

use catalog::fleet::FleetTenant;
use serde::Serialize;
use tenancy_core::{RunId, ServerId, TenantId};
use tenant_schema::{MigrationSet, Step};

use crate::error::{OpsError, OpsResult};
use crate::platform::Platform;

pub use run::{Event, ItemResult, Outcome, RunError, RunOptions, RunReport, run};
pub use verify::{Drift, VerifyReport, verify};

/// Where each tenant stands, from the catalog alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    Current,
    Pending,
    /// Pending, and the last attempt failed.
    Failed,
    /// A run is migrating it now (or died doing so; the next run clears the mark).
    Migrating,
    /// At a version this build does not know (a newer build migrated it).
    Ahead,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    pub slug: String,
    pub id: TenantId,
    pub server: String,
    pub status: catalog::tenants::Status,
    pub applied_version: Option<i64>,
    /// Versions still to apply.
    pub pending: Vec<i64>,
    pub state: TenantState,
    pub last_run: Option<RunId>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemplateStatus {
    pub server: String,
    pub server_id: ServerId,
    pub applied_version: Option<i64>,
    pub pending: Vec<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub tenants: usize,
    pub current: usize,
    pub pending: usize,
    pub failed: usize,
    pub migrating: usize,
    pub ahead: usize,
    pub templates_pending: usize,
    pub warm_pending: usize,
}

/// `migrate status` and `GET /v1/migrations`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub target_version: i64,
    pub migrations_source: String,
    pub steps: Vec<Step>,
    pub summary: Summary,
    pub last_run: Option<catalog::fleet::Run>,
    pub templates: Vec<TemplateStatus>,
    pub tenants: Vec<TenantStatus>,
}

fn versions(steps: &[Step]) -> Vec<i64> {
    steps.iter().map(|step| step.version).collect()
}

fn tenant_status(set: &MigrationSet, tenant: FleetTenant) -> TenantStatus {
    let target = set.latest_version();
    let pending = versions(&set.pending_after(tenant.schema_version));
    let state = if tenant.migrating_run.is_some() {
        TenantState::Migrating
    } else if tenant
        .schema_version
        .is_some_and(|version| version > target)
    {
        TenantState::Ahead
    } else if pending.is_empty() {
        TenantState::Current
    } else if tenant.last_outcome.as_deref() == Some("failed") {
        TenantState::Failed
    } else {
        TenantState::Pending
    };
    let last_error = match state {
        TenantState::Failed => tenant.last_error,
        _ => None,
    };
    TenantStatus {
        slug: tenant.slug,
        id: tenant.id,
        server: tenant.server,
        status: tenant.status,
        applied_version: tenant.schema_version,
        pending,
        state,
        last_run: tenant.last_run,
        last_error,
    }
}

/// The fleet's migration status from the catalog: three queries, no tenant database opened.
pub async fn status(platform: &Platform) -> OpsResult<FleetStatus> {
    let set = &platform.settings.migrations;
    let servers = catalog::servers::list(&platform.db).await?;
    let warm = catalog::fleet::warm_databases(&platform.db).await?;
    let tenants = catalog::fleet::tenants(&platform.db).await?;
    let last_run = catalog::fleet::last_run(&platform.db).await?;
    let target = set.latest_version();

    let templates: Vec<TemplateStatus> = servers
        .into_iter()
        .map(|server| TemplateStatus {
            pending: versions(&set.pending_after(server.schema_version)),
            server: server.name,
            server_id: server.id,
            applied_version: server.schema_version,
        })
        .collect();
    let tenants: Vec<TenantStatus> = tenants
        .into_iter()
        .map(|tenant| tenant_status(set, tenant))
        .collect();
    let mut summary = Summary {
        tenants: tenants.len(),
        templates_pending: templates.iter().filter(|t| !t.pending.is_empty()).count(),
        warm_pending: warm
            .iter()
            .filter(|w| w.schema_version.is_none_or(|version| version < target))
            .count(),
        ..Summary::default()
    };
    for tenant in &tenants {
        match tenant.state {
            TenantState::Current => summary.current += 1,
            TenantState::Pending => summary.pending += 1,
            TenantState::Failed => summary.failed += 1,
            TenantState::Migrating => summary.migrating += 1,
            TenantState::Ahead => summary.ahead += 1,
        }
    }
    Ok(FleetStatus {
        target_version: target,
        migrations_source: set.source().to_owned(),
        steps: set.steps(),
        summary,
        last_run,
        templates,
        tenants,
    })
}

/// What a run would do to one database.
#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    /// `template`, `warm` or `tenant`.
    pub kind: &'static str,
    pub slug: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    pub server: String,
    pub server_id: ServerId,
    pub database: String,
    pub from_version: Option<i64>,
    pub steps: Vec<Step>,
}

/// `migrate plan`: in the order a run takes them — templates, warm-pool databases, then
/// tenants interleaved across servers.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub target_version: i64,
    pub templates: Vec<PlanItem>,
    pub warm: Vec<PlanItem>,
    pub tenants: Vec<PlanItem>,
    /// Tenants asked for by slug that are not migratable (unknown, or not active or
    /// suspended).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_tenants: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty() && self.warm.is_empty() && self.tenants.is_empty()
    }
}

/// The plan for a run restricted to `only` (tenant slugs; empty: every tenant), from the
/// catalog alone.
pub async fn plan(platform: &Platform, only: &[String]) -> OpsResult<Plan> {
    let set = &platform.settings.migrations;
    let servers = catalog::servers::list(&platform.db).await?;
    let names: BTreeMap<ServerId, String> = servers
        .iter()
        .map(|server| (server.id, server.name.clone()))
        .collect();
    let templates = servers
        .iter()
        .filter_map(|server| {
            let steps = set.pending_after(server.schema_version);
            (!steps.is_empty()).then(|| PlanItem {
                kind: "template",
                slug: None,
                tenant_id: None,
                server: server.name.clone(),
                server_id: server.id,
                database: crate::names::TEMPLATE_DATABASE.to_owned(),
                from_version: server.schema_version,
                steps,
            })
        })
        .collect();
    let warm = catalog::fleet::warm_databases(&platform.db)
        .await?
        .into_iter()
        .filter_map(|warm| {
            let steps = set.pending_after(warm.schema_version);
            (!steps.is_empty()).then(|| PlanItem {
                kind: "warm",
                slug: None,
                tenant_id: None,
                server: names.get(&warm.server_id).cloned().unwrap_or_default(),
                server_id: warm.server_id,
                database: warm.name,
                from_version: warm.schema_version,
                steps,
            })
        })
        .collect();

    let all = catalog::fleet::tenants(&platform.db).await?;
    let unknown_tenants: Vec<String> = only
        .iter()
        .filter(|slug| !all.iter().any(|tenant| &tenant.slug == *slug))
        .cloned()
        .collect();
    // Per server, by slug; then one from each server in turn, so that the first tenants
    // (the canary) and every moment of the run spread over the servers.
    let mut by_server: BTreeMap<String, Vec<PlanItem>> = BTreeMap::new();
    for tenant in all {
        if !only.is_empty() && !only.contains(&tenant.slug) {
            continue;
        }
        let steps = set.pending_after(tenant.schema_version);
        if steps.is_empty() && tenant.migrating_run.is_none() {
            continue;
        }
        by_server
            .entry(tenant.server.clone())
            .or_default()
            .push(PlanItem {
                kind: "tenant",
                slug: Some(tenant.slug),
                tenant_id: Some(tenant.id),
                server: tenant.server,
                server_id: tenant.server_id,
                database: tenant.database_name,
                from_version: tenant.schema_version,
                steps,
            });
    }
    let tenants = interleave(by_server.into_values().collect());
    Ok(Plan {
        target_version: set.latest_version(),
        templates,
        warm,
        tenants,
        unknown_tenants,
    })
}

/// One item from each queue in turn, until all are empty: `[[a1, a2, a3], [b1]]` gives
/// `[a1, b1, a2, a3]`.
fn interleave<T>(queues: Vec<Vec<T>>) -> Vec<T> {
    let mut queues: Vec<std::vec::IntoIter<T>> = queues.into_iter().map(Vec::into_iter).collect();
    let mut all = Vec::new();
    loop {
        let before = all.len();
        for queue in &mut queues {
            all.extend(queue.next());
        }
        if all.len() == before {
            return all;
        }
    }
}

/// The admin address of each server named, each opened once.
async fn addresses(
    platform: &Platform,
    servers: impl IntoIterator<Item = ServerId>,
) -> OpsResult<std::collections::HashMap<ServerId, crate::ServerAddress>> {
    let mut addresses = std::collections::HashMap::new();
    for id in servers {
        if let std::collections::hash_map::Entry::Vacant(slot) = addresses.entry(id) {
            slot.insert(crate::servers::address(platform, id).await?);
        }
    }
    Ok(addresses)
}

fn internal(error: impl Into<anyhow::Error>) -> OpsError {
    OpsError::Internal(error.into())
}

#[cfg(test)]
mod tests {
    use super::interleave;

    #[test]
    fn tenants_are_taken_from_each_server_in_turn() {
        assert_eq!(
            interleave(vec![vec!["a1", "a2", "a3"], vec!["b1"], vec!["c1", "c2"]]),
            vec!["a1", "b1", "c1", "a2", "c2", "a3"]
        );
        assert_eq!(interleave::<u8>(vec![]), Vec::<u8>::new());
        assert_eq!(interleave(vec![vec![], vec![1, 2]]), vec![1, 2]);
    }
}
