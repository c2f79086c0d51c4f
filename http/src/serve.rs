//! Serving an axum router with bounds a hostile client cannot stretch: at most
//! `max_connections` connections at once (beyond that the listener waits, and new
//! connections queue in the kernel's backlog), a request's headers must arrive within
//! `header_read_timeout` and fit in `max_header_bytes` (else 431), and a shutdown waits for
//! requests in flight at most `shutdown_grace`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The most a request's headers may take (at least 8 KiB).
    pub max_header_bytes: usize,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Command-line options (with `TENANCY_` variables) for [`ConnectionLimits`], shared by the
/// services.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, env = "TENANCY_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers before it is disconnected.
    #[arg(long, env = "TENANCY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// The largest request header block accepted (bytes, at least 8192); larger gets 431.
    #[arg(long, env = "TENANCY_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Once listening, write the bound address (`127.0.0.1:40123`) to this file: with port
    /// 0 in the listen address, this is how a supervisor (or the test harness) learns
    /// which port the system chose.
    #[arg(long, env = "TENANCY_ADDRESS_FILE")]
    pub address_file: Option<std::path::PathBuf>,
}

impl ConnectionArgs {
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: self.header_read_timeout.max(Duration::from_millis(100)),
            max_header_bytes: self.max_header_bytes.max(8192),
            ..ConnectionLimits::default()
        }
    }
}

/// Binds `address` (port 0: any free port), logs the bound address as `what` and, when
/// `address_file` is given, writes it there (to a temporary name first, then renamed, so a
/// reader never sees half an address).
pub async fn bind(
    address: std::net::SocketAddr,
    address_file: Option<&std::path::Path>,
    what: &'static str,
) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("listen on {address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "{what} listening");
    if let Some(file) = address_file {
        // Beside the file, named after all of it: never another file's name.
        let mut partial = file.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        std::fs::write(&partial, bound.to_string())
            .and_then(|()| std::fs::rename(&partial, file))
            .with_context(|| format!("write the bound address to {}", file.display()))?;
    }
    Ok(listener)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (at most `limits.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes);
        // Handlers see the peer's address as `ConnectInfo<SocketAddr>` (audit logs).
        let service =
            app.clone()
                .map_request(move |mut request: axum::extract::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after the grace period were cut");
    }
    Ok(())
}
