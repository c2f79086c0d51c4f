//! What the two HTTP services (control plane and router) share: RFC 9457 problem
//! documents, JSON and query extractors whose rejections are problem documents, the request
//! span, and request metrics. Each service keeps its own error enum.

pub mod extract;
pub mod metrics;
pub mod problem;

pub use extract::{Json, Query};
pub use problem::Problem;

use axum::http::Request;

/// The span of one request: method, path and request id, with empty fields for the
/// tenant or admin that an extractor fills in once it knows.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        tenant_id = tracing::field::Empty,
        admin_id = tracing::field::Empty,
    )
}
