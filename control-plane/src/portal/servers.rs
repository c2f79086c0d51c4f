//! The portal's database servers: each one's tenants against its maximum, headroom,
//! connection budget, template schema and whether it answers now (asked by each row once
//! the page is shown, so a server that does not answer never holds the page up); and the
//! registration form.

use std::time::Instant;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use provisioner::error::OpsError;
use provisioner::servers::NewServerRequest;
use secrecy::SecretString;

use super::session::CurrentSession;
use super::{FieldProblems, FormField, PortalError, render};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/servers", get(servers).post(register))
        .route("/portal/servers/{name}/reachable", get(reachable))
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
    fields: Vec<FormField>,
    general: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct ServerForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    admin_user: String,
    #[serde(default)]
    admin_password: String,
    #[serde(default)]
    max_tenants: String,
    #[serde(default)]
    connection_budget: String,
}

impl ServerForm {
    fn fields(&self, errors: &[(String, String)]) -> Vec<FormField> {
        vec![
            FormField::new("name", "Name", "text", self.name.clone(), errors)
                .hint("a-z, 0-9 and '-', starting with a letter"),
            FormField::new("host", "Host", "text", self.host.clone(), errors),
            FormField::new("port", "Port", "number", self.port.clone(), errors),
            FormField::new(
                "admin_user",
                "Admin user",
                "text",
                self.admin_user.clone(),
                errors,
            )
            .hint("a role that may create databases and roles"),
            FormField::new(
                "admin_password",
                "Admin password",
                "password",
                String::new(),
                errors,
            )
            .hint("stored sealed; never shown again"),
            FormField::new(
                "max_tenants",
                "Most tenants",
                "number",
                self.max_tenants.clone(),
                errors,
            ),
            FormField::new(
                "connection_budget",
                "Connection budget",
                "number",
                self.connection_budget.clone(),
                errors,
            )
            .hint("connections the routers may hold to it, over all its tenants"),
        ]
    }
}

async fn page(
    state: &AppState,
    session: &CurrentSession,
    status: StatusCode,
    form: &ServerForm,
    errors: &[(String, String)],
    general: Option<String>,
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
        status,
        &ServersPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            servers,
            fields: form.fields(errors),
            general,
        },
    ))
}

async fn servers(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, PortalError> {
    let form = ServerForm {
        port: "5432".to_owned(),
        max_tenants: "1000".to_owned(),
        connection_budget: "150".to_owned(),
        ..ServerForm::default()
    };
    page(&state, &session, StatusCode::OK, &form, &[], None).await
}

async fn register(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Form(form): Form<ServerForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    let mut problems = FieldProblems::default();
    let mut number = |field: &str, text: &str| problems.whole(field, text);
    let request = NewServerRequest {
        name: form.name.trim().to_owned(),
        host: form.host.trim().to_owned(),
        port: number("port", &form.port),
        admin_user: form.admin_user.trim().to_owned(),
        admin_password: SecretString::from(form.admin_password.clone()),
        max_tenants: number("max_tenants", &form.max_tenants),
        connection_budget: number("connection_budget", &form.connection_budget),
    };
    if !problems.0.is_empty() {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return page(&state, &session, status, &form, &problems.0, None).await;
    }
    match crate::servers::register(&state.platform, &session.actor(), request).await {
        Ok(_) => Ok(Redirect::to("/portal/servers").into_response()),
        // Field problems next to their fields; a server that does not answer, or cannot be
        // prepared, above the form.
        Err(OpsError::Validation { errors, detail, .. }) => {
            let general = errors.is_empty().then_some(detail);
            let errors = FieldProblems::of(errors).0;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            page(&state, &session, status, &form, &errors, general).await
        }
        Err(OpsError::Conflict { detail, .. } | OpsError::ServiceUnavailable { detail, .. }) => {
            let status = StatusCode::CONFLICT;
            page(&state, &session, status, &form, &[], Some(detail)).await
        }
        Err(error) => Err(error.into()),
    }
}

/// Whether the server answers now, as a fragment for its row: connects as its admin (the
/// connection attempt is bounded) and asks it for nothing more.
async fn reachable(
    State(state): State<AppState>,
    _session: CurrentSession,
    Path(name): Path<String>,
) -> Result<Response, PortalError> {
    let secret = catalog::servers::all_secrets(&state.platform.db)
        .await?
        .into_iter()
        .find(|secret| secret.name == name)
        .ok_or(PortalError::NotFound)?;
    let address = crate::servers::to_address(&state.platform, secret)?;
    let started = Instant::now();
    let html = match address.connect("postgres").await {
        Ok(_) => format!(
            r#"<span class="status status-active">answers</span> <span class="muted">({} ms)</span>"#,
            started.elapsed().as_millis()
        ),
        Err(error) => {
            tracing::warn!(server = %name, %error, "server not reachable");
            r#"<span class="status status-failed">does not answer</span>"#.to_owned()
        }
    };
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response())
}
