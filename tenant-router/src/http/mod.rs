//! The router's HTTP surface, merged with the layers every request passes through.

mod audit_log;
mod auth;
mod customers;
mod events;
mod input;
mod ops;
mod roles;
mod users;

use axum::Router;

use crate::state::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT_BYTES: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(roles::router())
        .merge(audit_log::router())
        .merge(events::router())
        .merge(customers::router())
        .merge(ops::router());
    tenancy_http::with_layers(
        routes,
        state.metrics.http.clone(),
        tenancy_http::RequestLimits {
            body_bytes: BODY_LIMIT_BYTES,
            timeout: state.request_timeout,
        },
    )
    .with_state(state)
}
