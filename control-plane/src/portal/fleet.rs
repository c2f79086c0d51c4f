//! The portal's fleet pages: plans and their limits, database servers and their headroom,
//! the admin audit log (newest first, paged).

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::session::CurrentSession;
use super::{PortalError, render};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/plans", get(plans))
        .route("/portal/servers", get(servers))
        .route("/portal/audit", get(audit))
}

#[derive(Template)]
#[template(path = "portal/plans.html")]
struct PlansPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    plans: Vec<catalog::plans::Plan>,
}

async fn plans(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, PortalError> {
    Ok(render(
        StatusCode::OK,
        &PlansPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            plans: catalog::plans::list(&state.platform.db).await?,
        },
    ))
}

struct ServerRow {
    name: String,
    address: String,
    status: String,
    tenants: i64,
    max_tenants: i32,
    headroom: i64,
    budget: i32,
    schema: String,
}

#[derive(Template)]
#[template(path = "portal/servers.html")]
struct ServersPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    servers: Vec<ServerRow>,
}

async fn servers(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, PortalError> {
    let servers = catalog::servers::list(&state.platform.db)
        .await?
        .into_iter()
        .map(provisioner::wire::Server::from)
        .map(|server| ServerRow {
            address: format!("{}:{}", server.host, server.port),
            status: server.status.to_string(),
            headroom: (i64::from(server.max_tenants) - server.tenants).max(0),
            tenants: server.tenants,
            max_tenants: server.max_tenants,
            budget: server.connection_budget,
            schema: server
                .schema_version
                .map_or_else(|| "—".to_owned(), |version| version.to_string()),
            name: server.name,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ServersPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            servers,
        },
    ))
}

#[derive(Deserialize)]
struct AuditQuery {
    /// Entries older than this id.
    before: Option<i64>,
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
    let entries = catalog::audit::list(&state.platform.db, AUDIT_PAGE, query.before).await?;
    let older = (entries.len() == usize::try_from(AUDIT_PAGE).unwrap_or(usize::MAX))
        .then(|| entries.last())
        .flatten()
        .map(|last| format!("/portal/audit?before={}", last.id));
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
            entries,
            older,
        },
    ))
}
