//! Tenants: create, list, show, change, suspend, resume, delete.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use catalog::plans::FieldError;
use catalog::tenants::Status;
use provisioner::wire::{Tenant, TenantDetail};
use serde::{Deserialize, Serialize};
use tenancy_core::{Email, PlanName, Slug};
use tenancy_http::Path;

use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentAdmin, Json, Query};
use crate::state::AppState;
use crate::tenants::{Created, IdempotencyKey, ListQuery, NewTenant};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", get(list).post(create))
        .route("/v1/tenants/{slug}", get(show).patch(update).delete(delete))
        .route("/v1/tenants/{slug}/suspend", post(suspend))
        .route("/v1/tenants/{slug}/resume", post(resume))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: String,
    plan: String,
    admin_email: String,
    admin_password: String,
}

fn field<T>(
    name: &str,
    parsed: Result<T, tenancy_core::IdError>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    parsed
        .map_err(|error| errors.push(FieldError::new(name, error.0)))
        .ok()
}

async fn create(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    headers: HeaderMap,
    Json(body): Json<CreateTenant>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    let slug = field("slug", body.slug.parse::<Slug>(), &mut errors);
    let plan = field("plan", body.plan.parse::<PlanName>(), &mut errors);
    let admin_email = field(
        "admin_email",
        body.admin_email.parse::<Email>(),
        &mut errors,
    );
    let (Some(slug), Some(plan), Some(admin_email)) = (slug, plan, admin_email) else {
        return Err(ApiError::validation(errors));
    };
    let idempotency = match headers.get("idempotency-key") {
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|key| (1..=200).contains(&key.len()))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "`Idempotency-Key` must be 1 to 200 visible ASCII characters".to_owned(),
                    )
                })?;
            Some(IdempotencyKey {
                admin_id: admin.id,
                key: key.to_owned(),
            })
        }
        None => None,
    };
    let new = NewTenant {
        slug,
        name: body.name,
        plan,
        admin_email,
        admin_password: body.admin_password,
    };
    let created = crate::tenants::create(&state.platform, &admin.actor(), new, idempotency).await?;
    let (status, tenant, replayed) = match created {
        Created::New(tenant) => (StatusCode::CREATED, tenant, false),
        Created::Replayed(tenant) => (StatusCode::CREATED, tenant, true),
        Created::Pending(tenant) => (StatusCode::ACCEPTED, tenant, false),
    };
    let location = format!("/v1/tenants/{}", tenant.slug);
    let mut response = (
        status,
        [(header::LOCATION, location)],
        Json(Tenant::from(tenant)),
    )
        .into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    plan: Option<String>,
    server: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct TenantPage {
    items: Vec<Tenant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    _admin: CurrentAdmin,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<TenantPage>> {
    let page = crate::tenants::list(
        &state.platform,
        ListQuery {
            status: params.status,
            plan: params.plan,
            server: params.server,
            live_only: false,
            q: params.q,
            limit: params.limit,
            cursor: params.cursor,
        },
    )
    .await?;
    Ok(Json(TenantPage {
        items: page.items.into_iter().map(Tenant::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A slug from the path; one that cannot be a slug names no tenant.
fn path_slug(raw: &str) -> ApiResult<Slug> {
    raw.parse()
        .map_err(|_| crate::tenants::not_found(raw).into())
}

async fn show(
    State(state): State<AppState>,
    _admin: CurrentAdmin,
    Path(slug): Path<String>,
) -> ApiResult<Json<TenantDetail>> {
    let slug = path_slug(&slug)?;
    Ok(Json(
        crate::tenants::detail(&state.platform, slug.as_str()).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    name: Option<String>,
    plan: Option<String>,
}

async fn update(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(slug): Path<String>,
    Json(body): Json<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    let slug = path_slug(&slug)?;
    let plan = match body.plan {
        Some(plan) => Some(
            plan.parse::<PlanName>()
                .map_err(|error| ApiError::validation(vec![FieldError::new("plan", error.0)]))?,
        ),
        None => None,
    };
    Ok(Json(
        crate::tenants::update(
            &state.platform,
            &admin.actor(),
            slug.as_str(),
            body.name,
            plan,
        )
        .await?
        .into(),
    ))
}

async fn suspend(
    state: State<AppState>,
    admin: CurrentAdmin,
    slug: Path<String>,
) -> ApiResult<Json<Tenant>> {
    move_to(state, admin, slug, Status::Suspended).await
}

async fn resume(
    state: State<AppState>,
    admin: CurrentAdmin,
    slug: Path<String>,
) -> ApiResult<Json<Tenant>> {
    move_to(state, admin, slug, Status::Active).await
}

async fn move_to(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(slug): Path<String>,
    next: Status,
) -> ApiResult<Json<Tenant>> {
    let slug = path_slug(&slug)?;
    let tenant =
        crate::tenants::transition(&state.platform, &admin.actor(), slug.as_str(), next).await?;
    Ok(Json(tenant.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    /// `skip`: drop without a final backup (recorded); `require` (the default): never.
    final_backup: Option<FinalBackupChoice>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum FinalBackupChoice {
    Require,
    Skip,
}

/// 200 when dropped at once (no grace period), 202 while the grace period runs.
async fn delete(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(slug): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let slug = path_slug(&slug)?;
    let final_backup = match query.final_backup {
        Some(FinalBackupChoice::Skip) => crate::tenants::FinalBackup::Waived,
        Some(FinalBackupChoice::Require) | None => crate::tenants::FinalBackup::Required,
    };
    let tenant =
        crate::tenants::delete(&state.platform, &admin.actor(), slug.as_str(), final_backup)
            .await?;
    let status = if tenant.status == Status::Deleted {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(Tenant::from(tenant))).into_response())
}
