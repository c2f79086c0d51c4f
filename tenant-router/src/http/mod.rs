//! The router's HTTP surface, merged with the layers every request passes through.

mod audit_log;
mod auth;
mod events;
mod idempotency;
mod input;
mod ops;
mod orders;
mod resources;
mod roles;
mod table;
mod users;

use axum::Router;
use axum::http::Method;

use crate::state::AppState;

/// Largest request body accepted.
pub const BODY_LIMIT_BYTES: usize = 256 * 1024;

fn routes() -> table::Routes {
    auth::routes()
        .merge(users::routes())
        .merge(roles::routes())
        .merge(audit_log::routes())
        .merge(events::routes())
        .merge(resources::routes())
        .merge(orders::routes())
        .merge(ops::routes())
}

/// Every route the router serves: method and path template.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().into_parts().1
}

pub fn router(state: AppState) -> Router {
    let (routes, _) = routes().into_parts();
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

#[cfg(test)]
mod tests;
