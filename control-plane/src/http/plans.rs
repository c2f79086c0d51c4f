//! Plans: `GET /v1/plans`, `POST /v1/plans`, `PATCH /v1/plans/{name}`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, patch};
use catalog::audit::Change;
use catalog::plans::{FieldError, Plan, PlanLimits};
use serde::{Deserialize, Deserializer, Serialize};
use tenancy_core::PlanName;
use tenancy_http::Path;

use crate::error::{ApiError, ApiResult, ResultExt};
use crate::extract::{CurrentAdmin, Json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/plans", get(list).post(create))
        .route("/v1/plans/{name}", patch(update))
}

#[derive(Debug, Serialize)]
struct PlanList {
    items: Vec<Plan>,
}

async fn list(State(state): State<AppState>, _admin: CurrentAdmin) -> ApiResult<Json<PlanList>> {
    Ok(Json(PlanList {
        items: catalog::plans::list(&state.platform.db).await?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePlan {
    name: String,
    display_name: Option<String>,
    limits: PlanLimits,
}

fn parse_plan_name(raw: &str) -> ApiResult<PlanName> {
    raw.parse().map_err(|error: tenancy_core::IdError| {
        ApiError::validation(vec![FieldError::new("name", error.0)])
    })
}

use provisioner::plans::check_display_name;

async fn create(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Json(body): Json<CreatePlan>,
) -> ApiResult<impl IntoResponse> {
    let name = parse_plan_name(&body.name)?;
    let display_name = body.display_name.unwrap_or_else(|| name.to_string());
    let mut errors = body.limits.check();
    errors.extend(check_display_name(&display_name));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut transaction = state.platform.db.begin().await?;
    let plan = catalog::plans::create(&mut *transaction, &name, display_name.trim(), &body.limits)
        .await
        .on_constraint("plans_pkey", || {
            ApiError::conflict("plan_exists", format!("a plan named `{name}` exists"))
        })?;
    catalog::audit::record(
        &mut *transaction,
        &admin.actor(),
        Change {
            action: "plan.create",
            entity_type: "plan",
            entity_id: name.as_str(),
            before: None,
            after: Some(to_json(&plan)?),
        },
    )
    .await?;
    transaction.commit().await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/plans/{name}"))],
        Json(plan),
    ))
}

/// A partial update: absent fields stay as they are; `trial_days: null` removes the trial.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdatePlan {
    display_name: Option<String>,
    limits: Option<UpdateLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateLimits {
    max_users: Option<i32>,
    max_storage_mb: Option<i64>,
    requests_per_minute: Option<i32>,
    max_connections: Option<i32>,
    statement_timeout_ms: Option<i32>,
    backup_retention_days: Option<i32>,
    backup_interval_hours: Option<i32>,
    #[serde(default, deserialize_with = "present")]
    trial_days: Option<Option<i32>>,
}

/// Tells a field given as `null` (Some(None)) from one left out (None).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl UpdateLimits {
    fn apply(self, limits: &mut PlanLimits) {
        let UpdateLimits {
            max_users,
            max_storage_mb,
            requests_per_minute,
            max_connections,
            statement_timeout_ms,
            backup_retention_days,
            backup_interval_hours,
            trial_days,
        } = self;
        limits.max_users = max_users.unwrap_or(limits.max_users);
        limits.max_storage_mb = max_storage_mb.unwrap_or(limits.max_storage_mb);
        limits.requests_per_minute = requests_per_minute.unwrap_or(limits.requests_per_minute);
        limits.max_connections = max_connections.unwrap_or(limits.max_connections);
        limits.statement_timeout_ms = statement_timeout_ms.unwrap_or(limits.statement_timeout_ms);
        limits.backup_retention_days =
            backup_retention_days.unwrap_or(limits.backup_retention_days);
        limits.backup_interval_hours =
            backup_interval_hours.unwrap_or(limits.backup_interval_hours);
        if let Some(trial_days) = trial_days {
            limits.trial_days = trial_days;
        }
    }
}

async fn update(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(name): Path<String>,
    Json(body): Json<UpdatePlan>,
) -> ApiResult<Json<Plan>> {
    let plan = provisioner::plans::update(&state.platform, &admin.actor(), &name, |before| {
        let mut limits = before.limits.clone();
        if let Some(update) = body.limits {
            update.apply(&mut limits);
        }
        let display_name = body
            .display_name
            .unwrap_or_else(|| before.display_name.clone());
        (display_name, limits)
    })
    .await?;
    Ok(Json(plan))
}

fn to_json(plan: &Plan) -> ApiResult<serde_json::Value> {
    serde_json::to_value(plan)
        .map_err(|error| ApiError::internal(anyhow::Error::new(error).context("serialise a plan")))
}
