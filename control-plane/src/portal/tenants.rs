//! The portal's tenant pages: the list (filtered, paged, with each tenant's figures), the
//! creation form (each problem next to its field), and a tenant's actions: suspend, resume,
//! plan change (the limits before and after first), deletion (the slug typed).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use catalog::tenants::Status;
use provisioner::error::OpsError;
use provisioner::tenants::{Created, NewTenant};
use serde::Deserialize;
use tenancy_core::{Email, PlanName, Slug};

use super::session::CurrentSession;
use super::tenant_page::{Problems, tenant_page};
use super::{FieldProblems, FormField, PortalError, format, render};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/tenants", get(list))
        .route("/portal/tenants/new", get(new_form).post(create))
        .route("/portal/tenants/{slug}/suspend", post(suspend))
        .route("/portal/tenants/{slug}/resume", post(resume))
        .route("/portal/tenants/{slug}/plan", post(change_plan))
        .route("/portal/tenants/{slug}/delete", post(delete))
}

#[derive(Deserialize)]
struct TenantFilter {
    #[serde(default)]
    status: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

struct TenantRow {
    slug: String,
    name: String,
    plan: String,
    status: String,
    server: String,
    schema: String,
    /// `users / max`, or the max alone while the count is unknown.
    users: String,
    /// `used / limit`.
    storage: String,
    /// Over its storage limit.
    storage_exceeded: bool,
    requests_today: String,
    /// When the last complete backup finished, and how long ago.
    last_backup: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "portal/tenants.html")]
struct TenantsPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    /// Each status and whether the filter has it.
    statuses: Vec<(&'static str, bool)>,
    plan: &'a str,
    /// Each server and whether the filter has it.
    servers: Vec<(String, bool)>,
    q: &'a str,
    tenants: Vec<TenantRow>,
    next: Option<String>,
}

const STATUSES: &[&str] = &[
    "provisioning",
    "active",
    "suspended",
    "restoring",
    "failed",
    "deleted",
];

fn dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "—".to_owned())
}

async fn list(
    State(state): State<AppState>,
    session: CurrentSession,
    Query(filter): Query<TenantFilter>,
) -> Result<Response, PortalError> {
    let status = STATUSES
        .iter()
        .find(|status| **status == filter.status)
        .map(|status| (*status).to_owned());
    let plan = filter.plan.trim();
    let server = filter.server.trim();
    let page = provisioner::tenants::list(
        &state.platform,
        provisioner::tenants::ListQuery {
            status: status.clone(),
            plan: (!plan.is_empty()).then(|| plan.to_owned()),
            server: (!server.is_empty()).then(|| server.chars().take(63).collect()),
            // "any" status means every tenant still there; deleted ones are asked for.
            live_only: status.is_none(),
            q: Some(filter.q.chars().take(100).collect()),
            limit: Some(50),
            cursor: filter.cursor,
        },
    )
    .await?;
    let ids: Vec<_> = page.items.iter().map(|tenant| tenant.id).collect();
    let figures = catalog::usage::figures(&state.platform.db, &ids).await?;
    let now = chrono::Utc::now();
    let tenants = page
        .items
        .into_iter()
        .map(|tenant| {
            let figures = figures.iter().find(|row| row.tenant_id == tenant.id);
            let tenant = provisioner::wire::Tenant::from(tenant);
            row(tenant, figures, now)
        })
        .collect();
    let servers = catalog::servers::list(&state.platform.db)
        .await?
        .into_iter()
        .map(|row| {
            let chosen = row.name == server;
            (row.name, chosen)
        })
        .collect();
    let next = page.next_cursor.map(|cursor| {
        let query = serde_urlencoded::to_string([
            ("status", status.as_deref().unwrap_or_default()),
            ("plan", plan),
            ("server", server),
            ("q", filter.q.as_str()),
            ("cursor", cursor.as_str()),
        ])
        .unwrap_or_default();
        format!("/portal/tenants?{query}")
    });
    Ok(render(
        StatusCode::OK,
        &TenantsPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            statuses: STATUSES
                .iter()
                .map(|option| (*option, status.as_deref() == Some(*option)))
                .collect(),
            plan,
            servers,
            q: &filter.q,
            tenants,
            next,
        },
    ))
}

/// A row of the tenants table.
fn row(
    tenant: provisioner::wire::Tenant,
    figures: Option<&catalog::usage::Figures>,
    now: chrono::DateTime<chrono::Utc>,
) -> TenantRow {
    let users = figures.map_or_else(
        || "—".to_owned(),
        |figures| match figures.users {
            Some(users) => format!("{users} / {}", figures.max_users),
            None => format!("? / {}", figures.max_users),
        },
    );
    let storage = figures.map_or_else(
        || "—".to_owned(),
        |figures| {
            format!(
                "{} / {}",
                figures
                    .storage_bytes
                    .map_or_else(|| "?".to_owned(), format::bytes),
                format::bytes(figures.limit_bytes)
            )
        },
    );
    TenantRow {
        storage_exceeded: figures.is_some_and(|figures| {
            figures
                .storage_bytes
                .is_some_and(|bytes| bytes > figures.limit_bytes)
        }),
        requests_today: format::count(figures.map_or(0, |figures| figures.requests_today)),
        last_backup: figures
            .and_then(|figures| figures.last_backup_at)
            .map(|at| (format::time(at), format::age(at, now))),
        users,
        storage,
        slug: tenant.slug,
        name: tenant.name,
        plan: tenant.plan,
        status: tenant.status.to_string(),
        server: dash(tenant.server),
        schema: dash(tenant.schema_version.map(|version| version.to_string())),
    }
}

#[derive(Template)]
#[template(path = "portal/tenant_new.html")]
struct NewTenantPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    fields: Vec<FormField>,
    general: Option<String>,
}

#[derive(Deserialize, Default)]
struct NewTenantForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    admin_email: String,
    #[serde(default)]
    admin_password: String,
}

/// The form, filled with `form`, each problem in `errors` next to its field.
async fn form_page(
    state: &AppState,
    session: &CurrentSession,
    status: StatusCode,
    form: &NewTenantForm,
    errors: &[(String, String)],
    general: Option<String>,
) -> Result<Response, PortalError> {
    let chosen = if form.plan.is_empty() {
        "trial"
    } else {
        form.plan.as_str()
    };
    let mut plan = FormField::new("plan", "Plan", "select", form.plan.clone(), errors);
    plan.options = plan_choices(state, chosen).await?;
    let fields = vec![
        FormField::new("slug", "Slug", "text", form.slug.clone(), errors)
            .hint("lower-case letters, digits and dashes; it names the tenant in URLs"),
        FormField::new("name", "Name", "text", form.name.clone(), errors),
        plan,
        FormField::new(
            "admin_email",
            "First admin's e-mail",
            "email",
            form.admin_email.clone(),
            errors,
        ),
        // The password is never sent back.
        FormField::new(
            "admin_password",
            "First admin's password",
            "password",
            String::new(),
            errors,
        )
        .hint("at least 12 characters, not the e-mail, not a common password"),
    ];
    Ok(render(
        status,
        &NewTenantPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            fields,
            general,
        },
    ))
}

async fn new_form(
    State(state): State<AppState>,
    session: CurrentSession,
) -> Result<Response, PortalError> {
    form_page(
        &state,
        &session,
        StatusCode::OK,
        &NewTenantForm::default(),
        &[],
        None,
    )
    .await
}

async fn create(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Form(form): Form<NewTenantForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    let slug = form.slug.trim().parse::<Slug>();
    let plan = form.plan.parse::<PlanName>();
    let email = form.admin_email.trim().parse::<Email>();
    let (slug, plan, admin_email) = match (slug, plan, email) {
        (Ok(slug), Ok(plan), Ok(email)) => (slug, plan, email),
        (slug, plan, email) => {
            let errors: Vec<(String, String)> = [
                ("slug", slug.err()),
                ("plan", plan.err()),
                ("admin_email", email.err()),
            ]
            .into_iter()
            .filter_map(|(field, error)| Some((field.to_owned(), error?.0)))
            .collect();
            return form_page(
                &state,
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
                None,
            )
            .await;
        }
    };
    let new = NewTenant {
        slug,
        name: form.name.trim().to_owned(),
        plan,
        admin_email,
        admin_password: form.admin_password.clone(),
    };
    let actor = session.actor();
    match provisioner::tenants::create(&state.platform, &actor, new, None).await {
        Ok(Created::New(tenant) | Created::Replayed(tenant) | Created::Pending(tenant)) => {
            Ok(see_tenant(&tenant.slug))
        }
        Err(OpsError::Validation { errors, .. }) => {
            let errors = FieldProblems::of(errors).0;
            form_page(
                &state,
                &session,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &errors,
                None,
            )
            .await
        }
        Err(OpsError::Conflict { code, detail }) => {
            let errors = if code == "tenant_exists" {
                vec![("slug".to_owned(), "this slug is taken".to_owned())]
            } else {
                Vec::new()
            };
            let general = errors.is_empty().then_some(detail);
            form_page(
                &state,
                &session,
                StatusCode::CONFLICT,
                &form,
                &errors,
                general,
            )
            .await
        }
        Err(OpsError::ServiceUnavailable { detail, .. }) => {
            form_page(
                &state,
                &session,
                StatusCode::SERVICE_UNAVAILABLE,
                &form,
                &[],
                Some(detail),
            )
            .await
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Template)]
#[template(path = "portal/plan_confirm.html")]
struct PlanConfirmPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    slug: &'a str,
    from: &'a str,
    to: &'a str,
    /// Each limit, before and after.
    limits: Vec<(&'static str, String, String)>,
}

fn limit_rows(
    before: &catalog::plans::PlanLimits,
    after: &catalog::plans::PlanLimits,
) -> Vec<(&'static str, String, String)> {
    let row = |limit: &'static str, get: &dyn Fn(&catalog::plans::PlanLimits) -> String| {
        (limit, get(before), get(after))
    };
    vec![
        row("Users", &|limits| limits.max_users.to_string()),
        row("Storage (MB)", &|limits| limits.max_storage_mb.to_string()),
        row("Requests per minute", &|limits| {
            limits.requests_per_minute.to_string()
        }),
        row("Connections", &|limits| limits.max_connections.to_string()),
        row("Statement timeout (ms)", &|limits| {
            limits.statement_timeout_ms.to_string()
        }),
        row("Backups kept (days)", &|limits| {
            limits.backup_retention_days.to_string()
        }),
        row("Backup every (hours)", &|limits| {
            limits.backup_interval_hours.to_string()
        }),
    ]
}

#[derive(Deserialize)]
struct PlanForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
    #[serde(default)]
    plan: String,
    #[serde(default)]
    confirm: String,
}

/// A plan change: first the limits before and after, then (confirmed) the change.
async fn change_plan(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<PlanForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    let tenant = provisioner::tenants::get(&state.platform, &slug).await?;
    let plans = catalog::plans::list(&state.platform.db).await?;
    let current = plans.iter().find(|plan| plan.name == tenant.plan);
    let (Some(current), Some(next), Ok(name)) = (
        current,
        plans.iter().find(|plan| plan.name == form.plan),
        form.plan.parse::<PlanName>(),
    ) else {
        return tenant_page(
            &state,
            &session,
            &slug,
            StatusCode::UNPROCESSABLE_ENTITY,
            Problems::default(),
        )
        .await;
    };
    if form.confirm != "yes" {
        return Ok(render(
            StatusCode::OK,
            &PlanConfirmPage {
                admin: Some(&session.session.email),
                csrf: Some(session.session.csrf_token.clone()),
                slug: &slug,
                from: &current.name,
                to: &next.name,
                limits: limit_rows(&current.limits, &next.limits),
            },
        ));
    }
    match provisioner::tenants::update(&state.platform, &session.actor(), &slug, None, Some(name))
        .await
    {
        Ok(_) | Err(OpsError::Conflict { .. }) => Ok(see_tenant(&slug)),
        Err(error) => Err(error.into()),
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
    #[serde(default)]
    confirm: String,
    skip_final_backup: Option<String>,
}

/// Deletion, once the slug is typed exactly; a final backup first unless waived here.
async fn delete(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    if form.confirm.trim() != slug {
        let problems = Problems {
            delete: Some("type the tenant's slug exactly to delete it".to_owned()),
            ..Problems::default()
        };
        return tenant_page(
            &state,
            &session,
            &slug,
            StatusCode::UNPROCESSABLE_ENTITY,
            problems,
        )
        .await;
    }
    let final_backup = if form.skip_final_backup.as_deref() == Some("yes") {
        provisioner::tenants::FinalBackup::Waived
    } else {
        provisioner::tenants::FinalBackup::Required
    };
    match provisioner::tenants::delete(&state.platform, &session.actor(), &slug, final_backup).await
    {
        Ok(_) => Ok(see_tenant(&slug)),
        Err(OpsError::Conflict { detail, .. }) => {
            let problems = Problems {
                delete: Some(detail),
                ..Problems::default()
            };
            tenant_page(&state, &session, &slug, StatusCode::CONFLICT, problems).await
        }
        Err(error) => Err(error.into()),
    }
}

/// Every plan's name, and whether it is `chosen` (for a `<select>`).
pub(super) async fn plan_choices(
    state: &AppState,
    chosen: &str,
) -> Result<Vec<(String, bool)>, PortalError> {
    Ok(catalog::plans::list(&state.platform.db)
        .await?
        .into_iter()
        .map(|plan| {
            let selected = plan.name == chosen;
            (plan.name, selected)
        })
        .collect())
}

/// 303 to a tenant's page.
pub(super) fn see_tenant(slug: &str) -> Response {
    Redirect::to(&format!("/portal/tenants/{slug}")).into_response()
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
}

async fn change_status(
    state: AppState,
    session: CurrentSession,
    headers: HeaderMap,
    slug: String,
    form: ActionForm,
    to: Status,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    match provisioner::tenants::transition(&state.platform, &session.actor(), &slug, to).await {
        Ok(_) => {}
        // Already there, or not possible now: the page shows the status it is in.
        Err(OpsError::Conflict { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(see_tenant(&slug))
}

async fn suspend(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PortalError> {
    change_status(state, session, headers, slug, form, Status::Suspended).await
}

async fn resume(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PortalError> {
    change_status(state, session, headers, slug, form, Status::Active).await
}
