//! The portal's plans: every plan's limits and how many tenants are on it; a plan's edit
//! form (each problem next to its field; the change applies to its tenants at once).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use catalog::plans::{Plan, PlanLimits};
use provisioner::error::OpsError;

use super::session::CurrentSession;
use super::{FieldProblems, FormField, PortalError, render};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/plans", get(plans))
        .route("/portal/plans/{name}", get(edit_form).post(edit))
}

struct PlanRow {
    plan: Plan,
    tenants: i64,
}

#[derive(Template)]
#[template(path = "portal/plans.html")]
struct PlansPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    plans: Vec<PlanRow>,
}

async fn plans(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, PortalError> {
    let counts = catalog::plans::tenant_counts(&state.platform.db).await?;
    let plans = catalog::plans::list(&state.platform.db)
        .await?
        .into_iter()
        .map(|plan| PlanRow {
            tenants: counts
                .iter()
                .find(|(name, _)| *name == plan.name)
                .map_or(0, |(_, count)| *count),
            plan,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &PlansPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            plans,
        },
    ))
}

#[derive(Template)]
#[template(path = "portal/plan_edit.html")]
struct PlanEditPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    name: &'a str,
    fields: Vec<FormField>,
}

/// What the form sends: every field as typed.
#[derive(serde::Deserialize, Default)]
struct PlanForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    max_users: String,
    #[serde(default)]
    max_storage_mb: String,
    #[serde(default)]
    requests_per_minute: String,
    #[serde(default)]
    max_connections: String,
    #[serde(default)]
    statement_timeout_ms: String,
    #[serde(default)]
    backup_retention_days: String,
    #[serde(default)]
    backup_interval_hours: String,
    #[serde(default)]
    trial_days: String,
}

impl PlanForm {
    fn of(plan: &Plan) -> Self {
        let limits = &plan.limits;
        Self {
            csrf: None,
            display_name: plan.display_name.clone(),
            max_users: limits.max_users.to_string(),
            max_storage_mb: limits.max_storage_mb.to_string(),
            requests_per_minute: limits.requests_per_minute.to_string(),
            max_connections: limits.max_connections.to_string(),
            statement_timeout_ms: limits.statement_timeout_ms.to_string(),
            backup_retention_days: limits.backup_retention_days.to_string(),
            backup_interval_hours: limits.backup_interval_hours.to_string(),
            trial_days: limits
                .trial_days
                .map(|days| days.to_string())
                .unwrap_or_default(),
        }
    }

    /// The limits typed, or each field that is not a whole number.
    fn limits(&self) -> Result<PlanLimits, Vec<(String, String)>> {
        let mut problems = FieldProblems::default();
        let mut whole = |field: &str, text: &str| problems.whole(field, text);
        let narrow = |value: i64| i32::try_from(value).unwrap_or(i32::MAX);
        let limits = PlanLimits {
            max_users: narrow(whole("max_users", &self.max_users)),
            max_storage_mb: whole("max_storage_mb", &self.max_storage_mb),
            requests_per_minute: narrow(whole("requests_per_minute", &self.requests_per_minute)),
            max_connections: narrow(whole("max_connections", &self.max_connections)),
            statement_timeout_ms: narrow(whole("statement_timeout_ms", &self.statement_timeout_ms)),
            backup_retention_days: narrow(whole(
                "backup_retention_days",
                &self.backup_retention_days,
            )),
            backup_interval_hours: narrow(whole(
                "backup_interval_hours",
                &self.backup_interval_hours,
            )),
            trial_days: (!self.trial_days.trim().is_empty())
                .then(|| narrow(whole("trial_days", &self.trial_days))),
        };
        if problems.0.is_empty() {
            Ok(limits)
        } else {
            Err(problems.0)
        }
    }

    fn fields(&self, errors: &[(String, String)]) -> Vec<FormField> {
        let field = |name, label, value: &String| {
            FormField::new(name, label, "number", value.clone(), errors)
        };
        vec![
            FormField::new(
                "display_name",
                "Display name",
                "text",
                self.display_name.clone(),
                errors,
            ),
            field("max_users", "Users", &self.max_users),
            field("max_storage_mb", "Storage (MB)", &self.max_storage_mb),
            field(
                "requests_per_minute",
                "Requests per minute",
                &self.requests_per_minute,
            ),
            field(
                "max_connections",
                "Connections per tenant",
                &self.max_connections,
            ),
            field(
                "statement_timeout_ms",
                "Statement timeout (ms)",
                &self.statement_timeout_ms,
            ),
            field(
                "backup_retention_days",
                "Backups kept (days)",
                &self.backup_retention_days,
            ),
            field(
                "backup_interval_hours",
                "Backup every (hours)",
                &self.backup_interval_hours,
            ),
            field("trial_days", "Trial (days)", &self.trial_days).hint("empty: no trial"),
        ]
    }
}

fn edit_page(
    session: &CurrentSession,
    status: StatusCode,
    name: &str,
    form: &PlanForm,
    errors: &[(String, String)],
) -> Response {
    render(
        status,
        &PlanEditPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            name,
            fields: form.fields(errors),
        },
    )
}

async fn find(state: &AppState, name: &str) -> Result<Plan, PortalError> {
    catalog::plans::list(&state.platform.db)
        .await?
        .into_iter()
        .find(|plan| plan.name == name)
        .ok_or(PortalError::NotFound)
}

async fn edit_form(
    State(state): State<AppState>,
    session: CurrentSession,
    Path(name): Path<String>,
) -> Result<Response, PortalError> {
    let plan = find(&state, &name).await?;
    Ok(edit_page(
        &session,
        StatusCode::OK,
        &plan.name,
        &PlanForm::of(&plan),
        &[],
    ))
}

async fn edit(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<PlanForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    let plan = find(&state, &name).await?;
    let limits = match form.limits() {
        Ok(limits) => limits,
        Err(errors) => {
            return Ok(edit_page(
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                &plan.name,
                &form,
                &errors,
            ));
        }
    };
    let display_name = form.display_name.clone();
    match provisioner::plans::update(&state.platform, &session.actor(), &plan.name, |_| {
        (display_name, limits)
    })
    .await
    {
        Ok(_) => Ok(Redirect::to("/portal/plans").into_response()),
        Err(OpsError::Validation { errors, .. }) => {
            let errors = FieldProblems::of(errors).0;
            Ok(edit_page(
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                &plan.name,
                &form,
                &errors,
            ))
        }
        Err(error) => Err(error.into()),
    }
}
