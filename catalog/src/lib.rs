//! The catalog database: its migrations and typed queries on it. Shared by the control
//! plane, the router (read-only) and `tenantctl`. No HTTP here; callers map errors.

pub mod admins;
pub mod args;
pub mod audit;
pub mod backups;
pub mod directory;
pub mod fleet;
pub mod installation;
pub mod plans;
pub mod portal;
pub mod servers;
pub mod tenants;
pub mod usage;
pub mod warm;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use args::{CatalogArgs, CatalogArgsError};
pub use sqlx;

/// The catalog migrations, embedded from `migrations/catalog`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/catalog");

/// Connects to the catalog. The options carry the password; they are never logged.
pub async fn connect(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

/// Applies pending catalog migrations. Safe to call from several processes at once:
/// sqlx serialises them with an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
