//! The portal's fleet pages: schema migrations (where every tenant stands, failures with
//! their errors, the last runs), backups across the fleet (failures first) and the admin
//! audit log (filtered, newest first, paged).

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::Utc;
use provisioner::migrations::TenantState;
use serde::Deserialize;

use super::session::CurrentSession;
use super::tenant_page::{BackupRow, seconds};
use super::{PortalError, format, render};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/migrations", get(migrations))
        .route("/portal/backups", get(backups))
        .route("/portal/audit", get(audit))
}

struct FailedTenant {
    slug: String,
    server: String,
    version: String,
    error: String,
}

struct RunRow {
    id: String,
    target: i64,
    by: String,
    started: String,
    took: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "portal/migrations.html")]
struct MigrationsPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    target: i64,
    summary: provisioner::migrations::Summary,
    failures: Vec<FailedTenant>,
    templates: Vec<(String, String, usize)>,
    runs: Vec<RunRow>,
}

/// Failed tenants a page lists (the count is in the summary).
const FAILURES_SHOWN: usize = 100;

async fn migrations(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, PortalError> {
    let status = crate::migrations::status(&state.platform).await?;
    let failures = status
        .tenants
        .iter()
        .filter(|tenant| tenant.state == TenantState::Failed)
        .take(FAILURES_SHOWN)
        .map(|tenant| FailedTenant {
            slug: tenant.slug.clone(),
            server: tenant.server.clone(),
            version: tenant
                .applied_version
                .map_or_else(|| "—".to_owned(), |version| version.to_string()),
            error: tenant.last_error.clone().unwrap_or_default(),
        })
        .collect();
    let templates = status
        .templates
        .iter()
        .map(|template| {
            (
                template.server.clone(),
                template
                    .applied_version
                    .map_or_else(|| "—".to_owned(), |version| version.to_string()),
                template.pending.len(),
            )
        })
        .collect();
    let runs = catalog::fleet::recent_runs(&state.platform.db, 10)
        .await?
        .into_iter()
        .map(|run| RunRow {
            id: run.id.to_string(),
            target: run.target_version,
            by: run.started_by,
            started: format::time(run.started_at),
            took: run
                .finished_at
                .map_or_else(|| "—".to_owned(), |done| seconds(done - run.started_at)),
            outcome: run.outcome.to_string(),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &MigrationsPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            target: status.target_version,
            summary: status.summary,
            failures,
            templates,
            runs,
        },
    ))
}

/// Backup attempts the fleet's page lists.
const FLEET_BACKUPS_SHOWN: i64 = 100;

#[derive(Template)]
#[template(path = "portal/backups.html")]
struct BackupsPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    /// (tenant, attempt), failures first, then newest first.
    backups: Vec<(String, BackupRow)>,
}

async fn backups(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, PortalError> {
    let now = Utc::now();
    let mut rows = catalog::backups::recent(&state.platform.db, None, FLEET_BACKUPS_SHOWN).await?;
    // Stable: within failures and the rest, newest first as read.
    rows.sort_by_key(|backup| backup.status != catalog::backups::BackupStatus::Failed);
    let backups = rows
        .iter()
        .map(|backup| {
            (
                backup.tenant.clone(),
                super::tenant_page::backup_row(backup, now),
            )
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &BackupsPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            backups,
        },
    ))
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    /// Entries older than this id.
    before: Option<i64>,
    /// Actions starting with this.
    #[serde(default)]
    action: String,
    /// The actor, exactly.
    #[serde(default)]
    actor: String,
    /// A tenant's slug: its entries.
    #[serde(default)]
    tenant: String,
}

struct AuditRow {
    when: String,
    actor: String,
    action: String,
    entity: String,
}

#[derive(Template)]
#[template(path = "portal/audit.html")]
struct AuditPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    action: &'a str,
    actor: &'a str,
    tenant: &'a str,
    entries: Vec<AuditRow>,
    older: Option<String>,
}

/// Entries a page shows.
const AUDIT_PAGE: i64 = 50;

async fn audit(
    State(state): State<AppState>,
    session: CurrentSession,
    Query(query): Query<AuditQuery>,
) -> Result<Response, PortalError> {
    let action = query.action.trim();
    let actor = query.actor.trim();
    let tenant = query.tenant.trim();
    // A tenant is recorded under its id or its slug (deleted ones included).
    let ids = if tenant.is_empty() {
        None
    } else {
        let mut ids = vec![tenant.to_owned()];
        ids.extend(
            catalog::tenants::ids_by_slug(&state.platform.db, tenant)
                .await?
                .into_iter()
                .map(|id| id.to_string()),
        );
        Some(ids)
    };
    let entries = catalog::audit::search(
        &state.platform.db,
        &catalog::audit::Filter {
            action: (!action.is_empty()).then_some(action),
            actor: (!actor.is_empty()).then_some(actor),
            entity_type: None,
            entity_ids: ids.as_deref(),
        },
        AUDIT_PAGE,
        query.before,
    )
    .await?;
    let older = (entries.len() == usize::try_from(AUDIT_PAGE).unwrap_or(usize::MAX))
        .then(|| entries.last())
        .flatten()
        .map(|last| {
            let query = serde_urlencoded::to_string([
                ("action", action),
                ("actor", actor),
                ("tenant", tenant),
                ("before", &last.id.to_string()),
            ])
            .unwrap_or_default();
            format!("/portal/audit?{query}")
        });
    let entries = entries
        .into_iter()
        .map(|entry| AuditRow {
            when: entry
                .occurred_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            actor: entry.actor,
            action: entry.action,
            entity: format!("{} {}", entry.entity_type, entry.entity_id),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            action,
            actor,
            tenant,
            entries,
            older,
        },
    ))
}
