//! The tenant router: the API tenant apps call (SPEC §6, §7).
//!
//! For now it is a placeholder that answers the operational endpoints only; request routing
//! to tenant pools arrives with its own issue. It is started by `tenantctl dev` so that the
//! local platform already has its final shape.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "TENANCY_ROUTER_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
}

pub fn router() -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(|| async { axum::Json(json!({ "status": "ready" })) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/problem+json")],
                axum::Json(json!({
                    "type": "urn:tenancy:problem:not_found",
                    "title": "Not Found",
                    "status": 404,
                    "code": "not_found",
                    "detail": "no such route (the router serves only health checks so far)",
                })),
            )
                .into_response()
        })
}

pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "tenant router listening");
    serve(listener, tenancy_core::shutdown::signal()).await?;
    Ok(())
}
