//! The layers every request of both services passes through, in one place: request ids
//! (set and echoed), a span per request, a time limit (503 `timeout`), a body limit (413),
//! request metrics by route template, problem documents for unknown routes and methods,
//! and a panic in a handler answered as a 500 problem document.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::Problem;
use crate::metrics::HttpMetrics;

/// A service's limits on one request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest body accepted.
    pub body_bytes: usize,
    /// Longest a request may take before it is answered `503 timeout`.
    pub timeout: Duration,
}

/// `routes` with the common layers around them.
pub fn with_layers<S>(
    routes: Router<S>,
    metrics: Arc<HttpMetrics>,
    limits: RequestLimits,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .fallback(crate::problem::not_found)
        .method_not_allowed_fallback(crate::problem::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::request_span)
                // A 5xx is the client's problem to retry, not an incident: errors that are
                // incidents are logged where they happen.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(axum::middleware::from_fn_with_state(
            limits.timeout,
            crate::timeout,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred",
            )
            .into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
