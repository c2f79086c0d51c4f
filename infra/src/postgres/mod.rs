//! An embedded, throwaway PostgreSQL cluster run from the system's server binaries.
//!
//! `tenantctl dev` and the test harness both use it: `initdb` into a data directory (once;
//! an existing cluster is reused), then `postgres` on a loopback port, as the `postgres`
//! system user when this process runs as root (the server refuses to run as root).
//! The server is a child process in its own process group, so a terminal's Ctrl-C reaches
//! only the owner, which then stops the server in order. Dropping the handle stops it.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User, chown};
use rand::Rng;
use rand::distributions::Alphanumeric;

/// The superuser the cluster is created with.
pub const SUPERUSER: &str = "postgres";

/// File in the data directory that keeps the generated superuser password.
const PASSWORD_FILE: &str = "tenancy-superuser.pass";
/// File in the data directory that receives the server's log.
const LOG_FILE: &str = "server.log";

/// Everything that can go wrong while running an embedded cluster. Each message says what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL server binaries not found (looked in {searched}); install them \
         (Debian: `apt-get install postgresql`) or set TENANCY_PG_BIN_DIR to the directory \
         that holds `postgres` and `initdb`"
    )]
    BinariesNotFound { searched: String },
    #[error(
        "running as root, but there is no `{0}` system user to run the server as; \
         create one (Debian's postgresql package does) or run as an unprivileged user"
    )]
    NoServiceUser(String),
    #[error(
        "the `postgres` user cannot reach {0}: make the directory traversable \
         (chmod o+x) or put the data directory elsewhere"
    )]
    Unreachable(PathBuf),
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("PostgreSQL did not become ready within {waited:?}; last lines of its log:\n{log}")]
    NotReady { waited: Duration, log: String },
    #[error("PostgreSQL exited during start-up ({status}); last lines of its log:\n{log}")]
    Exited { status: String, log: String },
}

fn io_error(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> PostgresError {
    let action = action.into();
    move |source| PostgresError::Io { action, source }
}

mod binaries;
mod setup;

pub use binaries::PgBinaries;
use setup::{absolute, init_cluster, log_tail, service_user, spawn_server, stop_stale_server};

/// How to run a cluster.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The data directory; created and initialised if it holds no cluster yet.
    pub data_dir: PathBuf,
    /// The port to listen on; a free one is picked when `None` (or when this one is taken
    /// and `port_is_preference` is set).
    pub port: Option<u16>,
    /// Fall back to a free port when `port` is taken.
    pub port_is_preference: bool,
    /// Keep fsync on. Tests turn it off for speed; `dev` keeps its data.
    pub durable: bool,
    /// `max_connections` of the server.
    pub max_connections: u32,
    /// Further server settings (`name`, `value`), passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
}

impl PostgresOptions {
    /// Options for a test cluster: fast and not durable, on a free port.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: None,
            port_is_preference: false,
            durable: false,
            max_connections: 200,
            settings: Vec::new(),
        }
    }
}

/// A running embedded PostgreSQL server. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    binaries: PgBinaries,
    data_dir: PathBuf,
    port: u16,
    password: String,
    child: Option<Child>,
}

impl EmbeddedPostgres {
    /// Initialises the cluster if needed and starts the server; returns once it accepts
    /// connections.
    pub fn start(options: PostgresOptions) -> Result<Self, PostgresError> {
        let binaries = PgBinaries::locate()?;
        let service_user = service_user()?;
        let data_dir = absolute(&options.data_dir)?;
        let password = if data_dir.join("PG_VERSION").is_file() {
            fs::read_to_string(data_dir.join(PASSWORD_FILE))
                .map_err(io_error(format!(
                    "read the superuser password of the cluster in {}",
                    data_dir.display()
                )))?
                .trim()
                .to_owned()
        } else {
            init_cluster(&binaries, &data_dir, service_user.as_ref())?
        };
        stop_stale_server(&data_dir)?;

        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = match options.port {
                Some(port) if !options.port_is_preference => port,
                Some(port) if attempts == 1 && port_is_free(port) => port,
                _ => free_port()?,
            };
            let child = spawn_server(&binaries, &data_dir, port, &options, service_user.as_ref())?;
            let mut server = Self {
                binaries: binaries.clone(),
                data_dir: data_dir.clone(),
                port,
                password: password.clone(),
                child: Some(child),
            };
            match server.wait_until_ready(Duration::from_secs(60)) {
                Ok(()) => return Ok(server),
                // Another process took a port we picked between our probe and the bind.
                Err(PostgresError::Exited { log, .. })
                    if log.contains("could not bind")
                        && attempts < 5
                        && (options.port.is_none() || options.port_is_preference) =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.binaries
    }

    /// The superuser's password. It grants everything on this server: never log it.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// A connection URL for `database` as the superuser (it carries the password).
    pub fn superuser_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@{}:{}/{database}",
            self.password,
            self.host(),
            self.port
        )
    }

    /// Stops the server with a fast shutdown and waits for it to exit.
    pub fn stop(&mut self) -> Result<(), PostgresError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        // SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    // "Immediate" shutdown; the next start recovers from WAL.
                    let _ = kill(pid, Signal::SIGQUIT);
                    let _ = child.wait();
                    return Ok(());
                }
                Err(source) => {
                    return Err(PostgresError::Io {
                        action: "wait for the PostgreSQL server to exit".to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), PostgresError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(PostgresError::Exited {
                    status: status.to_string(),
                    log: log_tail(&self.data_dir),
                });
            }
            let ready = Command::new(self.binaries.path("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    self.host(),
                    "-p",
                    &self.port.to_string(),
                    "-t",
                    "1",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(io_error("run pg_isready"))?;
            if ready.success() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let _ = self.stop();
                return Err(PostgresError::NotReady {
                    waited: timeout,
                    log: log_tail(&self.data_dir),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "stop embedded PostgreSQL");
        }
    }
}

/// A port that was free a moment ago on the loopback interface.
pub fn free_port() -> Result<u16, PostgresError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("find a free loopback port"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(io_error("find a free loopback port"))
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}
