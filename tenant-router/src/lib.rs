//! The tenant router: the API tenant apps call. A request's token names its
//! tenant; the tenant directory (cached from the catalog, invalidated by `LISTEN`) says
//! where its database is; the request runs on that tenant's own pool, as that tenant's own
//! database role, under the plan's limits.

pub mod audit;
pub mod auth;
pub mod config;
pub mod cursor;
pub mod directory;
pub mod error;
pub mod events;
pub mod extract;
pub mod http;
pub mod ids;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod pools;
pub mod prewarm;
pub mod state;
pub mod tenant;
pub mod usage;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tenancy_core::claims::TENANT_AUDIENCE;
use tenancy_core::token::TokenVerifier;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::Config;
pub use state::AppState;

/// A router's state and its background tasks (directory listener, pool maintenance),
/// which stop when this is dropped.
pub struct Router {
    pub state: AppState,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Router {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connects to the catalog and starts the background tasks.
pub async fn build(config: &Config) -> anyhow::Result<Router> {
    let sealer = config.sealer()?;
    let auth = auth::AuthState::from_config(&config.auth)?;
    let cursors = cursor::Cursors::new(auth.cursor_secret.expose_secret().as_bytes());
    let verifier = TokenVerifier::from_public_pems(
        &config.public_keys()?,
        &config.jwt_issuer,
        TENANT_AUDIENCE,
    )
    .context("load the token public keys")?;
    let catalog = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_with(config.database_options()?)
        .await
        .context("connect to the catalog database")?;
    let metrics = Arc::new(metrics::Metrics::default());
    let directory = Arc::new(
        directory::Directory::new(
            catalog.clone(),
            sealer,
            config.directory_ttl,
            config.directory_negative_ttl,
            config.directory_capacity,
            metrics.clone(),
        )
        .with_read_delay(config.fault_directory_delay),
    );
    let pools = Arc::new(pools::Pools::new(
        config.pool_wait,
        pools::OpenLimits {
            per_second: config.server_opens_per_second,
            at_once: config.server_opens_at_once,
        },
    ));
    let usage = Arc::new(usage::UsageCounter::default());
    let tasks = vec![
        listener::spawn_listener(
            catalog.clone(),
            directory.clone(),
            pools.clone(),
            config.prewarm_tenants,
        ),
        pools::spawn_maintenance(pools.clone(), config.pool_idle),
        usage::spawn_flusher(usage.clone(), catalog.clone(), config.usage_flush),
    ];
    Ok(Router {
        state: AppState::new(state::Shared {
            directory,
            pools,
            verifier: Arc::new(verifier),
            auth: Arc::new(auth),
            events: Arc::new(events::Events::new(&config.events)),
            cursors: Arc::new(cursors),
            limiter: Arc::new(limits::RateLimiter::default()),
            usage,
            metrics,
            catalog,
            request_timeout: config.request_timeout,
            connection_limits: config.connections.limits(),
        }),
        tasks,
    })
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.connection_limits;
    tenancy_http::serve(listener, http::router(state), limits, shutdown).await
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let router = build(&config).await?;
    let listener = tenancy_http::bind(
        config.listen,
        config.connections.address_file.as_deref(),
        "tenant router",
    )
    .await?;
    serve(
        listener,
        router.state.clone(),
        tenancy_core::shutdown::signal(),
    )
    .await?;
    Ok(())
}
