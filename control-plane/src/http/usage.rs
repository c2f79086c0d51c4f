//! `GET /v1/tenants/{slug}/usage`: requests per hour and storage.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use catalog::usage::{HourlyRequests, Storage};
use serde::Serialize;
use tenancy_http::Path;

use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentAdmin, Json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tenants/{slug}/usage", get(usage))
}

#[derive(Serialize)]
struct Usage {
    tenant: String,
    requests_last_24h: i64,
    /// The last 24 hours, oldest first; hours without requests are left out.
    hourly_requests: Vec<HourlyRequests>,
    storage: Storage,
}

async fn usage(
    State(state): State<AppState>,
    _admin: CurrentAdmin,
    Path(slug): Path<String>,
) -> ApiResult<Json<Usage>> {
    let tenant = crate::tenants::get(&state.platform, &slug).await?;
    let hourly_requests =
        catalog::usage::hourly_requests(&state.platform.db, tenant.id, 24).await?;
    let storage = catalog::usage::storage(&state.platform.db, tenant.id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the tenant vanished")))?;
    Ok(Json(Usage {
        tenant: tenant.slug,
        requests_last_24h: hourly_requests.iter().map(|hour| hour.requests).sum(),
        hourly_requests,
        storage,
    }))
}
