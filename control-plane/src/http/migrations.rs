//! `GET /v1/migrations`: the fleet's schema migration status, the same document as
//! `tenantctl migrate status --json`, read from the catalog alone.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::error::ApiResult;
use crate::extract::{CurrentAdmin, Json};
use crate::migrations::FleetStatus;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/migrations", get(status))
}

async fn status(
    State(state): State<AppState>,
    _admin: CurrentAdmin,
) -> ApiResult<Json<FleetStatus>> {
    Ok(Json(crate::migrations::status(&state.platform).await?))
}
