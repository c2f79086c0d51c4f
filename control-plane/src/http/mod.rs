//! The HTTP surface: one module per resource, each with its own `router()`, merged here
//! with the layers every request passes through.

mod audit;
pub(crate) mod auth;
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

use crate::state::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
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
        .merge(crate::portal::router());
    tenancy_http::with_layers(
        routes,
        state.metrics.http.clone(),
        tenancy_http::RequestLimits {
            body_bytes: BODY_LIMIT_BYTES,
            timeout: Duration::from_secs(30),
        },
    )
    .with_state(state)
}
