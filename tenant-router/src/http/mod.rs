//! The router's HTTP surface, merged with the layers every request passes through.

mod customers;
mod ops;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(customers::router())
        .merge(ops::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            tenancy_http::metrics::track,
        ))
        .fallback(tenancy_http::problem::not_found)
        .method_not_allowed_fallback(tenancy_http::problem::method_not_allowed)
        .layer(DefaultBodyLimit::max(256 * 1024))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(tenancy_http::request_span)
                // A 5xx is the client's problem to retry, not an incident: errors that are
                // incidents are logged where they happen.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.request_timeout,
            tenancy_http::timeout,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
