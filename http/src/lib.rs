//! What the two HTTP services (control plane and router) share: RFC 9457 problem
//! documents, JSON, query and path extractors whose rejections are problem documents (and
//! that refuse NUL characters, which PostgreSQL cannot store), the request span, request
//! metrics, and a server loop with bounded connections and header reads. Each service
//! keeps its own error enum.

pub mod extract;
pub mod layers;
pub mod metrics;
pub mod problem;
pub mod serve;

pub use extract::{Json, Path, Query};
pub use layers::{RequestLimits, with_layers};
pub use problem::Problem;
pub use serve::{ConnectionArgs, ConnectionLimits, bind, serve};

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

/// Middleware: a request whose handler takes longer than the limit (the state) is answered
/// `503 timeout` as a problem document, with `Retry-After`.
pub async fn timeout(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request took too long and was abandoned; retry",
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            response
        }
    }
}
