//! The control plane: the super-admins' HTTP API over the catalog database, and the
//! scheduler of the background jobs. What it does to tenants, servers and databases is
//! the operations library's (`provisioner`); this crate is HTTP around it, mapping its
//! one error type into problem documents ([`error`]).
//!
//! `main.rs` parses configuration and calls [`run`]; `tenantctl dev` and the tests build the
//! state with [`build_state`] and serve it with [`serve`] on a listener of their own.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod http;
pub mod jobs;
pub mod metrics;
mod portal;
pub mod state;

// The operations, under the names the handlers use.
pub use provisioner::{backups, migrations, servers, sweep, tenants};

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;
pub use state::{AppState, Platform, Settings};

/// Connects to the catalog, applies its migrations and loads the keys.
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    config.validate()?;
    let key = config.load_signing_key()?;
    let sealer = config.load_catalog_key()?;
    let db = catalog::connect(config.database_options()?, config.database_max_connections)
        .await
        .context("connect to the catalog database")?;
    catalog::migrate(&db)
        .await
        .context("apply the catalog migrations")?;
    let platform = Platform::new(
        db,
        sealer,
        Settings {
            delete_grace: config.delete_grace,
            warm_pool_size: config.warm_pool_size,
            fault_after_step: config.fault_after_step.clone(),
            migrations: config.tenant_migrations()?,
            backup_store: crate::backups::Store::from_args(&config.s3)?,
            scheduled_backups: config.scheduled_backups,
            sweep: config.sweep_settings(),
            restore_keep: config.restore_keep,
        },
    )
    .await
    .context("read the installation id from the catalog")?;
    Ok(AppState {
        platform,
        auth: Arc::new(auth::AdminAuth::new(
            key,
            config.jwt_issuer.clone(),
            config.admin_token_ttl,
        )),
        metrics: Arc::new(metrics::Metrics::default()),
        connection_limits: config.connections.limits(),
    })
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.connection_limits;
    tenancy_http::serve(listener, http::router(state), limits, shutdown).await
}

/// How long a shutdown waits for background work in flight (a backup, a provisioning).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the control plane until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    let listener = tenancy_http::bind(
        config.listen,
        config.connections.address_file.as_deref(),
        "control plane",
    )
    .await?;
    let jobs = jobs::spawn(
        state.platform.clone(),
        state.metrics.clone(),
        config.jobs_interval,
        config.storage_sample_interval,
    );
    let platform = state.platform.clone();
    serve(listener, state, tenancy_core::shutdown::signal()).await?;
    jobs.stop();
    if !platform.finish_tasks(SHUTDOWN_GRACE).await {
        tracing::warn!(
            "shutdown: background work (backups, provisioning) still running was cut short; the jobs finish or clean it up at the next start"
        );
    }
    tracing::info!("control plane stopped");
    Ok(())
}
