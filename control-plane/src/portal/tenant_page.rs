//! A tenant's page: its facts, status actions, plan and deletion (in `tenants`), and here
//! what the page shows besides: its backups (take one and watch it complete, restore one
//! with the slug typed), a service token minted and shown once, usage charts and the
//! tenant's recent admin audit entries.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use catalog::backups::BackupStatus;
use catalog::tenants::Status;
use chrono::Utc;
use provisioner::error::OpsError;
use tenancy_core::BackupId;

use super::session::CurrentSession;
use super::{PortalError, charts, format, render};
use crate::backups::Trigger;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/tenants/{slug}", get(show))
        .route("/portal/tenants/{slug}/backups", post(take_backup))
        .route("/portal/tenants/{slug}/restore", post(restore))
        .route("/portal/tenants/{slug}/tokens", post(mint_token))
}

/// Backup attempts a tenant's page lists.
const BACKUPS_SHOWN: i64 = 10;
/// Audit entries a tenant's page lists.
const AUDIT_SHOWN: i64 = 10;
/// Days the storage chart covers.
const STORAGE_DAYS: i64 = 30;

pub struct TenantView {
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub server: String,
    pub database: String,
    pub schema: String,
    pub created: String,
    pub users: String,
    pub storage: String,
    pub requests_today: String,
    /// The last complete backup: when, and how long ago; `never`.
    pub last_backup: String,
    pub trial_ends: Option<String>,
    pub suspended: Option<String>,
    pub delete_after: Option<String>,
    pub failure: Option<String>,
}

pub struct BackupRow {
    pub id: String,
    pub status: String,
    pub trigger: String,
    pub started: String,
    pub duration: String,
    pub size: String,
    pub by: String,
    pub error: Option<String>,
    /// A complete backup, which can be restored.
    pub restorable: bool,
}

pub struct RestoreView {
    pub backup: String,
    pub status: String,
    pub by: String,
    pub started: String,
    pub error: Option<String>,
}

pub struct AuditRow {
    pub when: String,
    pub actor: String,
    pub action: String,
}

/// Messages next to a form of the page, after a refused post.
#[derive(Default)]
pub struct Problems {
    pub delete: Option<String>,
    pub backup: Option<String>,
    pub restore: Option<String>,
    pub token: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/tenant.html")]
struct TenantPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    tenant: TenantView,
    /// Plan change, deletion, backups and tokens are offered.
    manageable: bool,
    /// Polls itself: provisioning or restoring.
    settling: bool,
    plans: Vec<(String, bool)>,
    problems: Problems,
    backups: Vec<BackupRow>,
    /// One of them is complete (a restore is offered).
    restorable: bool,
    /// A backup or restore is running: the backups part polls itself.
    backups_running: bool,
    restore: Option<RestoreView>,
    scopes: &'static [&'static str],
    requests_chart: String,
    requests_summary: String,
    storage_chart: String,
    storage_summary: String,
    audit: Vec<AuditRow>,
}

#[derive(serde::Deserialize)]
struct ShowQuery {
    /// Set by the page's own polling while the tenant is provisioning or restoring.
    settling: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, PortalError> {
    // A poll of a page that was provisioning or restoring: once settled, the whole page
    // changes (its actions come back), so htmx reloads it rather than swapping the facts.
    let reload_if_settled = query.settling.is_some() && headers.contains_key("hx-request");
    render_tenant_page(
        &state,
        &session,
        &slug,
        StatusCode::OK,
        Problems::default(),
        reload_if_settled,
    )
    .await
}

fn dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "—".to_owned())
}

/// A tenant's page, with `problems` next to their forms.
pub async fn tenant_page(
    state: &AppState,
    session: &CurrentSession,
    slug: &str,
    status: StatusCode,
    problems: Problems,
) -> Result<Response, PortalError> {
    render_tenant_page(state, session, slug, status, problems, false).await
}

/// The page; with `reload_if_settled`, a tenant no longer provisioning or restoring is
/// answered with `HX-Refresh` instead (decided on the same read the page would show, so a
/// poll never swaps in a settled tenant without its actions).
async fn render_tenant_page(
    state: &AppState,
    session: &CurrentSession,
    slug: &str,
    status: StatusCode,
    problems: Problems,
    reload_if_settled: bool,
) -> Result<Response, PortalError> {
    let db = &state.platform.db;
    let row = provisioner::tenants::get(&state.platform, slug).await?;
    if reload_if_settled && !matches!(row.status, Status::Provisioning | Status::Restoring) {
        return Ok((StatusCode::OK, [("hx-refresh", "true")]).into_response());
    }
    let id = row.id;
    let figures = catalog::usage::figures(db, &[id]).await?.into_iter().next();
    let tenant = provisioner::wire::Tenant::from(row);
    let plans = super::tenants::plan_choices(state, &tenant.plan).await?;
    let manageable = matches!(tenant.status, Status::Active | Status::Suspended);
    let now = Utc::now();

    let backups: Vec<BackupRow> = catalog::backups::recent(db, Some(id), BACKUPS_SHOWN)
        .await?
        .into_iter()
        .map(|backup| backup_row(&backup, now))
        .collect();
    let restore = catalog::backups::latest_restore(db, id).await?;
    let backups_running = backups.iter().any(|backup| backup.status == "running")
        || restore
            .as_ref()
            .is_some_and(|restore| restore.status == "running");
    let restore = restore.map(|restore| RestoreView {
        backup: restore.backup_id.to_string(),
        status: restore.status,
        by: restore.requested_by,
        started: format::time(restore.started_at),
        error: restore.error,
    });

    let hours = catalog::usage::hourly_requests(db, id, 168).await?;
    let (requests_chart, requests_summary) = charts::requests_per_hour(&hours, now);
    let days = catalog::usage::storage_history(db, id, STORAGE_DAYS as i32).await?;
    let limit = figures.as_ref().map_or(0, |figures| figures.limit_bytes);
    let (storage_chart, storage_summary) =
        charts::storage_per_day(&days, now.date_naive(), STORAGE_DAYS, limit);

    let ids = [id.to_string(), tenant.slug.clone()];
    let audit = catalog::audit::search(
        db,
        &catalog::audit::Filter {
            entity_type: Some("tenant"),
            entity_ids: Some(&ids),
            ..Default::default()
        },
        AUDIT_SHOWN,
        None,
    )
    .await?
    .into_iter()
    .map(|entry| AuditRow {
        when: format::time(entry.occurred_at),
        actor: entry.actor,
        action: entry.action,
    })
    .collect();

    let settling = matches!(tenant.status, Status::Provisioning | Status::Restoring);
    let view = TenantView {
        users: figures.as_ref().map_or_else(
            || "—".to_owned(),
            |figures| match figures.users {
                Some(users) => format!("{users} of {}", figures.max_users),
                None => format!("not counted yet (at most {})", figures.max_users),
            },
        ),
        storage: figures.as_ref().map_or_else(
            || "—".to_owned(),
            |figures| match figures.storage_bytes {
                Some(bytes) => format!(
                    "{} of {}",
                    format::bytes(bytes),
                    format::bytes(figures.limit_bytes)
                ),
                None => format!(
                    "not sampled yet (limit {})",
                    format::bytes(figures.limit_bytes)
                ),
            },
        ),
        requests_today: format::count(figures.as_ref().map_or(0, |figures| figures.requests_today)),
        last_backup: figures
            .as_ref()
            .and_then(|figures| figures.last_backup_at)
            .map_or_else(
                || "never".to_owned(),
                |at| format!("{} ({})", format::age(at, now), format::time(at)),
            ),
        trial_ends: tenant.trial_ends_at.map(format::time),
        suspended: tenant.suspended_at.map(format::time),
        delete_after: tenant.delete_after.map(format::time),
        failure: (tenant.status == Status::Failed).then(|| {
            format!(
                "provisioning stopped after step `{}`; the cause is in the control plane's log",
                tenant.provisioning_step.as_deref().unwrap_or("none")
            )
        }),
        slug: tenant.slug,
        name: tenant.name,
        plan: tenant.plan,
        status: tenant.status.to_string(),
        server: dash(tenant.server),
        database: dash(tenant.database_name),
        schema: dash(tenant.schema_version.map(|version| version.to_string())),
        created: format::time(tenant.created_at),
    };
    Ok(render(
        status,
        &TenantPage {
            admin: Some(&session.session.email),
            csrf: Some(session.session.csrf_token.clone()),
            tenant: view,
            manageable,
            settling,
            plans,
            problems,
            restorable: backups.iter().any(|backup| backup.restorable),
            backups,
            backups_running,
            restore,
            scopes: tenancy_core::claims::SCOPES,
            requests_chart,
            requests_summary,
            storage_chart,
            storage_summary,
            audit,
        },
    ))
}

pub fn backup_row(backup: &catalog::backups::Backup, now: chrono::DateTime<Utc>) -> BackupRow {
    let status = match backup.status {
        BackupStatus::Running => "running",
        BackupStatus::Complete => "complete",
        BackupStatus::Failed => "failed",
        BackupStatus::Pruned => "pruned",
    };
    let duration = match backup.completed_at {
        Some(done) => seconds(done - backup.started_at),
        None if backup.status == BackupStatus::Running => {
            format!("{} so far", seconds(now - backup.started_at))
        }
        None => "—".to_owned(),
    };
    BackupRow {
        id: backup.id.to_string(),
        status: status.to_owned(),
        trigger: backup.trigger.to_string(),
        started: format::time(backup.started_at),
        duration,
        size: backup.bytes.map_or_else(|| "—".to_owned(), format::bytes),
        by: backup.requested_by.clone(),
        error: backup
            .error
            .as_ref()
            .map(|error| error.chars().take(300).collect()),
        restorable: backup.status == BackupStatus::Complete,
    }
}

/// A duration as `0.4 s`, `12 s`, `3 min 5 s`.
pub fn seconds(duration: chrono::TimeDelta) -> String {
    let millis = duration.num_milliseconds().max(0);
    if millis < 10_000 {
        format!("{:.1} s", millis as f64 / 1000.0)
    } else if millis < 60_000 {
        format!("{} s", millis / 1000)
    } else {
        format!("{} min {} s", millis / 60_000, millis % 60_000 / 1000)
    }
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
}

/// Takes a backup now; it runs on after the answer, and the page shows it running, then
/// complete.
async fn take_backup(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    let tenant = provisioner::tenants::get(&state.platform, &slug).await?;
    match crate::backups::begin(
        &state.platform,
        &tenant.slug,
        Trigger::Manual,
        &session.actor().name,
    )
    .await
    .map_err(OpsError::from)
    {
        Ok(pending) => {
            // Its own task: leaving the page does not cut the backup short.
            state.platform.spawn(async move {
                let _ = pending.run().await;
            });
            Ok(super::tenants::see_tenant(&slug))
        }
        Err(OpsError::Conflict { detail, .. } | OpsError::ServiceUnavailable { detail, .. }) => {
            let problems = Problems {
                backup: Some(detail),
                ..Problems::default()
            };
            tenant_page(&state, &session, &slug, StatusCode::CONFLICT, problems).await
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(serde::Deserialize)]
struct RestoreForm {
    #[serde(rename = "_csrf", default)]
    csrf: Option<String>,
    #[serde(default)]
    backup: String,
    #[serde(default)]
    confirm: String,
}

/// Restores one of the tenant's complete backups over it, once the slug is typed exactly.
/// The restore runs on after the answer (the tenant is `restoring` meanwhile); the page
/// shows how it ended.
async fn restore(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<RestoreForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    let tenant = provisioner::tenants::get(&state.platform, &slug).await?;
    let refuse = |message: &str| Problems {
        restore: Some(message.to_owned()),
        ..Problems::default()
    };
    if form.confirm.trim() != tenant.slug {
        let problems = refuse("type the tenant's slug exactly to restore over it");
        return tenant_page(
            &state,
            &session,
            &slug,
            StatusCode::UNPROCESSABLE_ENTITY,
            problems,
        )
        .await;
    }
    let backup = match form.backup.parse::<BackupId>() {
        Ok(id) => catalog::backups::get(&state.platform.db, id).await?,
        Err(_) => None,
    };
    let Some(backup) = backup
        .filter(|backup| backup.tenant_id == tenant.id && backup.status == BackupStatus::Complete)
    else {
        let problems = refuse("choose one of this tenant's complete backups");
        return tenant_page(
            &state,
            &session,
            &slug,
            StatusCode::UNPROCESSABLE_ENTITY,
            problems,
        )
        .await;
    };
    if !matches!(tenant.status, Status::Active | Status::Suspended) {
        let problems = refuse("only an active or suspended tenant is restored");
        return tenant_page(&state, &session, &slug, StatusCode::CONFLICT, problems).await;
    }
    let before = catalog::backups::latest_restore(&state.platform.db, tenant.id)
        .await?
        .map(|restore| restore.id);
    let platform = state.platform.clone();
    let actor = session.actor();
    let expected = tenant.slug.clone();
    let (done, mut finished) = tokio::sync::oneshot::channel();
    state.platform.spawn(async move {
        let result = crate::backups::restore(&platform, &actor, backup.id, Some(&expected)).await;
        match &result {
            Ok(_) => tracing::info!(tenant = %expected, backup = %backup.id, "restored"),
            Err(error) => {
                tracing::warn!(tenant = %expected, backup = %backup.id, %error, "restore failed");
            }
        }
        let _ = done.send(result.map(|_| ()).map_err(OpsError::from));
    });
    // The answer waits (a little) until the restore is under way, so the page shows it
    // running; a restore refused before it began (the tenant busy, the object damaged) is
    // shown on the page instead.
    let deadline = tokio::time::Instant::now() + RESTORE_START_WAIT;
    loop {
        tokio::select! {
            result = &mut finished => {
                return match result {
                    Ok(Err(error)) => {
                        let problems = refuse(&problem_text(error));
                        tenant_page(&state, &session, &slug, StatusCode::CONFLICT, problems).await
                    }
                    _ => Ok(super::tenants::see_tenant(&slug)),
                };
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                let latest = catalog::backups::latest_restore(&state.platform.db, tenant.id)
                    .await?
                    .map(|restore| restore.id);
                if latest != before || tokio::time::Instant::now() >= deadline {
                    return Ok(super::tenants::see_tenant(&slug));
                }
            }
        }
    }
}

/// How long a restore request waits for the restore to be under way.
const RESTORE_START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What an admin is told of a refused operation (internal causes are logged, not shown).
fn problem_text(error: OpsError) -> String {
    match error {
        OpsError::Conflict { detail, .. }
        | OpsError::ServiceUnavailable { detail, .. }
        | OpsError::NotFound { detail, .. } => detail,
        OpsError::BadRequest(detail) => detail,
        OpsError::Validation { errors, .. } => errors
            .into_iter()
            .map(|error| error.message)
            .collect::<Vec<_>>()
            .join("; "),
        OpsError::Unavailable => "the catalog is unavailable; try again shortly".to_owned(),
        OpsError::Internal(error) => {
            tracing::error!(error = %format!("{error:#}"), "portal operation failed");
            "the operation failed; the cause has been logged".to_owned()
        }
    }
}

#[derive(Template)]
#[template(path = "portal/token.html")]
struct TokenPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    slug: &'a str,
    token: &'a str,
    scopes: String,
    expires: String,
}

/// Mints a service token and shows it once (the answer is not stored by the browser).
async fn mint_token(
    State(state): State<AppState>,
    session: CurrentSession,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let csrf = fields
        .iter()
        .find(|(name, _)| name == "_csrf")
        .map(|(_, value)| value.as_str());
    session.check_csrf(&headers, csrf)?;
    let scopes: Vec<String> = fields
        .iter()
        .filter(|(name, _)| name == "scope")
        .map(|(_, value)| value.clone())
        .take(100)
        .collect();
    let ttl = fields
        .iter()
        .find(|(name, _)| name == "ttl")
        .and_then(|(_, value)| value.parse::<i64>().ok());
    let minted = provisioner::tokens::mint(
        &state.platform,
        &session.actor(),
        &slug,
        scopes,
        ttl,
        state.auth.issuer(),
        |claims| Ok(state.auth.sign(claims)?),
    )
    .await;
    match minted {
        Ok((token, claims)) => Ok(render(
            StatusCode::CREATED,
            &TokenPage {
                admin: Some(&session.session.email),
                csrf: Some(session.session.csrf_token.clone()),
                slug: &slug,
                token: &token,
                scopes: claims.scopes.join(", "),
                expires: chrono::DateTime::from_timestamp(claims.exp, 0)
                    .map_or_else(String::new, format::time),
            },
        )),
        Err(error @ (OpsError::Validation { .. } | OpsError::Conflict { .. })) => {
            let status = match error {
                OpsError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::CONFLICT,
            };
            let problems = Problems {
                token: Some(problem_text(error)),
                ..Problems::default()
            };
            tenant_page(&state, &session, &slug, status, problems).await
        }
        Err(error) => Err(error.into()),
    }
}
