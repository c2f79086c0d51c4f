//! The state every handler receives explicitly.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::AdminAuth;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub auth: Arc<AdminAuth>,
    pub metrics: Arc<Metrics>,
}
