//! The state every handler receives explicitly: the platform (the operations' context,
//! shared with `tenantctl`), the token signer and verifier, the metrics.

use std::sync::Arc;

pub use provisioner::platform::{Platform, Settings};

use crate::auth::AdminAuth;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub platform: Platform,
    pub auth: Arc<AdminAuth>,
    pub metrics: Arc<Metrics>,
    /// Connections at once, header read time and size.
    pub connection_limits: tenancy_http::ConnectionLimits,
}
