//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use super::table::Routes;
use crate::error::{RouterError, RouterResult};
use crate::extract::Json;
use crate::state::AppState;

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn routes() -> Routes {
    Routes::new()
        .get("/healthz", || async { Json(json!({ "status": "ok" })) })
        .get("/readyz", readyz)
        .get("/metrics", metrics)
        .get("/openapi.json", || async {
            ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
        })
}

/// Ready when the catalog answers within two seconds (tenant servers are checked per
/// request, by their breakers).
async fn readyz(State(state): State<AppState>) -> RouterResult<Json<serde_json::Value>> {
    let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.catalog);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "ready" }))),
        _ => Err(RouterError::CatalogUnavailable),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(
            &state.pools.stats(),
            crate::metrics::EventStats {
                clients: state.events.clients(),
                listeners: state.events.tenants(),
            },
            state.directory.len(),
        ),
    )
}
