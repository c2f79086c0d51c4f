//! The HTTP surface: one module per resource, each with its own `router()`, merged here
//! with the layers every request passes through.

mod audit;
mod auth;
mod backups;
mod migrations;
mod ops;
mod plans;
mod servers;
mod tenants;
mod tokens;
mod usage;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::error::ApiError;
use crate::state::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(auth::router())
        .merge(plans::router())
        .merge(audit::router())
        .merge(servers::router())
        .merge(tenants::router())
        .merge(tokens::router())
        .merge(migrations::router())
        .merge(backups::router())
        .merge(usage::router())
        .merge(ops::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            tenancy_http::metrics::track,
        ));
    api.fallback(tenancy_http::problem::not_found)
        .method_not_allowed_fallback(tenancy_http::problem::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(tenancy_http::request_span)
                // A 5xx is the client's problem to retry, not an incident: errors that are
                // incidents are logged where they happen.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(30),
            tenancy_http::timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
