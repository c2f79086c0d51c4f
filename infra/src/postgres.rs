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

/// Where the server binaries (`initdb`, `postgres`, `pg_isready`, `pg_dump`, ...) live.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries: in `TENANCY_PG_BIN_DIR` when it is set (and only there), else
    /// in the newest `/usr/lib/postgresql/*/bin`, else in a directory on `PATH`.
    pub fn locate() -> Result<Self, PostgresError> {
        if let Some(dir) = std::env::var_os("TENANCY_PG_BIN_DIR") {
            return Self::locate_in(&[PathBuf::from(dir)]);
        }
        let mut candidates = Vec::new();
        if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<(u32, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, entry.path().join("bin")))
                })
                .collect();
            versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
            candidates.extend(versions.into_iter().map(|(_, dir)| dir));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        Self::locate_in(&candidates)
    }

    /// The first of `candidates` that holds `postgres` and `initdb`.
    pub fn locate_in(candidates: &[PathBuf]) -> Result<Self, PostgresError> {
        candidates
            .iter()
            .find(|dir| has_server(dir))
            .map(|dir| Self { dir: dir.clone() })
            .ok_or_else(|| PostgresError::BinariesNotFound {
                searched: if candidates.is_empty() {
                    "nowhere".to_owned()
                } else {
                    candidates
                        .iter()
                        .map(|dir| dir.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// The path of one of the binaries, e.g. `pg_dump`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}

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

/// The unprivileged user to run the server as, when this process is root.
fn service_user() -> Result<Option<User>, PostgresError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let name = std::env::var("TENANCY_PG_SERVICE_USER").unwrap_or_else(|_| "postgres".to_owned());
    match User::from_name(&name) {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(PostgresError::NoServiceUser(name)),
    }
}

fn absolute(path: &Path) -> Result<PathBuf, PostgresError> {
    std::path::absolute(path).map_err(io_error(format!("resolve {}", path.display())))
}

/// Runs `initdb` into `data_dir` and returns the generated superuser password.
fn init_cluster(
    binaries: &PgBinaries,
    data_dir: &Path,
    service_user: Option<&User>,
) -> Result<String, PostgresError> {
    fs::create_dir_all(data_dir).map_err(io_error(format!("create {}", data_dir.display())))?;
    if let Some(user) = service_user {
        check_reachable(data_dir, user)?;
        chown(data_dir, Some(user.uid), Some(user.gid)).map_err(|errno| PostgresError::Io {
            action: format!("hand {} to the postgres user", data_dir.display()),
            source: errno.into(),
        })?;
    }
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_error(format!("restrict {}", data_dir.display())))?;

    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    // initdb reads the password from a file; give it one only the server user can read and
    // remove it right after.
    let password_file = data_dir.join(PASSWORD_FILE);
    fs::write(&password_file, format!("{password}\n"))
        .map_err(io_error("write the superuser password file"))?;
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600))
        .map_err(io_error("restrict the superuser password file"))?;
    if let Some(user) = service_user {
        chown(&password_file, Some(user.uid), Some(user.gid)).map_err(|errno| {
            PostgresError::Io {
                action: "hand the password file to the postgres user".to_owned(),
                source: errno.into(),
            }
        })?;
    }
    // initdb wants an empty directory, so it runs in a fresh subdirectory that is then
    // moved into place.
    let staging = data_dir.join("initdb");
    let mut command = Command::new(binaries.path("initdb"));
    command
        .arg("-D")
        .arg(&staging)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-N",
        ])
        .arg(format!("--pwfile={}", password_file.display()));
    run_as(&mut command, service_user);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io_error("run initdb"))?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&staging);
        return Err(PostgresError::Command {
            command: "initdb".to_owned(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    for entry in fs::read_dir(&staging).map_err(io_error("read the new cluster"))? {
        let entry = entry.map_err(io_error("read the new cluster"))?;
        fs::rename(entry.path(), data_dir.join(entry.file_name()))
            .map_err(io_error("move the new cluster into place"))?;
    }
    fs::remove_dir(&staging).map_err(io_error("remove initdb's staging directory"))?;
    Ok(password)
}

/// Fails with a clear message when a directory above `path` keeps the service user out.
fn check_reachable(path: &Path, user: &User) -> Result<(), PostgresError> {
    for ancestor in path.ancestors().skip(1) {
        let Ok(metadata) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = metadata.mode();
        let traversable = mode & 0o001 != 0
            || (metadata.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (metadata.gid() == user.gid.as_raw() && mode & 0o010 != 0);
        if !traversable {
            return Err(PostgresError::Unreachable(ancestor.to_path_buf()));
        }
    }
    Ok(())
}

fn run_as(command: &mut Command, user: Option<&User>) {
    if let Some(user) = user {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        command.env("HOME", &user.dir).env("USER", &user.name);
    }
}

/// A server left running by an earlier owner that died (say, a killed `tenantctl dev`)
/// still holds the data directory; stop it so this one can start.
fn stop_stale_server(data_dir: &Path) -> Result<(), PostgresError> {
    let Ok(contents) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return Ok(());
    };
    let Some(pid) = contents
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    let pid = Pid::from_raw(pid);
    if !is_alive(pid) {
        return Ok(()); // Stale lock file: the server is gone; PostgreSQL removes the file.
    }
    tracing::warn!(
        pid = pid.as_raw(),
        "stopping a PostgreSQL server left running on this data directory"
    );
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_alive(pid) {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGQUIT);
            std::thread::sleep(Duration::from_secs(1));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether a process exists and is not a zombie waiting to be reaped.
fn is_alive(pid: Pid) -> bool {
    if kill(pid, None).is_err() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

fn spawn_server(
    binaries: &PgBinaries,
    data_dir: &Path,
    port: u16,
    options: &PostgresOptions,
    service_user: Option<&User>,
) -> Result<Child, PostgresError> {
    let log_path = data_dir.join(LOG_FILE);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_error(format!("open {}", log_path.display())))?;
    let log_err = log.try_clone().map_err(io_error("open the server log"))?;
    let mut command = Command::new(binaries.path("postgres"));
    command
        .arg("-D")
        .arg(data_dir)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args([
            "-c",
            &format!("max_connections={}", options.max_connections),
        ]);
    if !options.durable {
        for setting in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ] {
            command.args(["-c", setting]);
        }
    }
    run_as(&mut command, service_user);
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(io_error("start postgres"))
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

/// The last lines of the server's log, for error messages.
fn log_tail(data_dir: &Path) -> String {
    let Ok(mut file) = fs::File::open(data_dir.join(LOG_FILE)) else {
        return String::from("(no log)");
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(4096)));
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    let lines: Vec<&str> = tail.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
