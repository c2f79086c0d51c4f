//! The state every handler receives explicitly.

use std::sync::Arc;

use tenancy_core::token::TokenVerifier;

use crate::auth::AuthState;
use crate::cursor::Cursors;
use crate::directory::Directory;
use crate::events::Events;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::pools::Pools;
use crate::usage::UsageCounter;

/// Cloned for every request (axum hands each handler its own): one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every handler shares.
pub struct Shared {
    pub directory: Arc<Directory>,
    pub pools: Arc<Pools>,
    /// Verifies service tokens (the control plane's keys).
    pub verifier: Arc<TokenVerifier>,
    /// User sign-in, sessions and the router's own user tokens.
    pub auth: Arc<AuthState>,
    /// Seals and opens list cursors.
    pub cursors: Arc<Cursors>,
    /// Live events: a hub per tenant with connected clients.
    pub events: Arc<Events>,
    pub limiter: Arc<RateLimiter>,
    pub usage: Arc<UsageCounter>,
    pub metrics: Arc<Metrics>,
    pub catalog: sqlx::PgPool,
    /// Longest a request may take before it is answered `503 timeout`.
    pub request_timeout: std::time::Duration,
    /// Connections at once, header read time and size.
    pub connection_limits: tenancy_http::ConnectionLimits,
}
