//! The end-to-end test harness: real binaries, a real PostgreSQL cluster per test, real
//! HTTP. Each helper fails loudly with what is missing; nothing is skipped.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tenancy_core::sealing::Sealer;
use tenancy_core::token::TokenKey;
use tenancy_infra::{EmbeddedPostgres, PostgresOptions};

pub use reqwest;
pub use serde_json::json;

/// Builds the workspace's binaries once per test process and returns the path of `name`.
/// `cargo test` does not build the binaries of other packages, so the harness asks cargo
/// (a no-op when `infra/test.sh` built them already).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let directory = BUILT.get_or_init(|| {
        // target/<profile>/deps/<test binary> -> target/<profile>
        let exe = std::env::current_exe().expect("the test binary's path");
        let directory = exe
            .parent()
            .and_then(Path::parent)
            .expect("the target directory")
            .to_path_buf();
        let mut args = vec!["build", "--workspace", "--bins", "--locked", "--quiet"];
        if directory.ends_with("release") {
            args.push("--release"); // a benchmark
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the binaries under test");
        assert!(status.success(), "cargo build --bins failed");
        directory
    });
    let path = directory.join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Where the harness puts clusters and other scratch files: `TENANCY_TEST_TMPDIR` when it
/// is set, else `/dev/shm` (memory) when this machine has it, else the system's temporary
/// directory. PostgreSQL creates and deletes thousands of small files per test (a
/// `CREATE DATABASE` copies hundreds); on a disk file system the kernel's inode allocation
/// for them was most of the suite's time (measured with `perf`: ext4's free-inode search).
pub fn scratch_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("TENANCY_TEST_TMPDIR") {
            return PathBuf::from(dir);
        }
        let memory = Path::new("/dev/shm");
        let usable = memory.is_dir()
            && tempfile::Builder::new()
                .prefix("tenancy-probe-")
                .tempdir_in(memory)
                .is_ok();
        if usable {
            memory.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

/// A temporary directory the `postgres` user can enter (test clusters run as that user
/// when the tests run as root), under [`scratch_root`].
pub fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("tenancy-test-")
        .tempdir_in(scratch_root())
        .expect("create a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open the temporary directory to the postgres user");
    dir
}

/// A fresh PostgreSQL cluster in a temporary directory, stopped and removed on drop.
pub struct TestPostgres {
    pub server: EmbeddedPostgres,
    // Dropped after the server: the directory goes once the server is stopped.
    _dir: tempfile::TempDir,
}

/// An initialised cluster directory that tests copy instead of running `initdb` each:
/// made once per machine (per user and PostgreSQL version) under [`scratch_root`],
/// atomically (made aside, then renamed into place), and kept for later runs.
fn cluster_template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let binaries =
            tenancy_infra::postgres::PgBinaries::locate().expect("the PostgreSQL server binaries");
        let version = binaries
            .dir()
            .parent()
            .and_then(Path::file_name)
            .map_or_else(
                || "pg".to_owned(),
                |name| name.to_string_lossy().into_owned(),
            );
        let uid = nix::unistd::getuid();
        let path = scratch_root().join(format!("tenancy-test-cluster-{uid}-{version}"));
        if path.join("data").join("PG_VERSION").is_file() {
            return path;
        }
        let aside = temp_dir();
        let mut server =
            EmbeddedPostgres::start(PostgresOptions::for_tests(aside.path().join("data")))
                .expect("initialise the template cluster");
        server.stop().expect("stop the template cluster");
        let aside = aside.keep();
        if std::fs::rename(&aside, &path).is_err() {
            // Another test process put its template there first.
            let _ = std::fs::remove_dir_all(&aside);
        }
        path
    })
}

impl TestPostgres {
    /// A cluster copied from the template cluster (no `initdb`): fast. Every such cluster
    /// has the template's `system_identifier`, so a test that registers two servers makes
    /// the second with [`TestPostgres::start_distinct`].
    pub fn start() -> Self {
        let dir = temp_dir();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(cluster_template().join("data"))
            .arg(dir.path().join("data"))
            .status()
            .expect("run cp");
        assert!(copied.success(), "copy the template cluster");
        let server = EmbeddedPostgres::start(PostgresOptions::for_tests(dir.path().join("data")))
            .expect("start an embedded PostgreSQL cluster");
        Self { server, _dir: dir }
    }

    /// A cluster of its own (`initdb`): another `system_identifier` than every other.
    pub fn start_distinct() -> Self {
        let dir = temp_dir();
        let server = EmbeddedPostgres::start(PostgresOptions::for_tests(dir.path().join("data")))
            .expect("start an embedded PostgreSQL cluster");
        Self { server, _dir: dir }
    }

    pub fn url(&self, database: &str) -> String {
        self.server.superuser_url(database)
    }

    /// Creates a database (named by the test; a constant) and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let mut connection = connect(&self.url("postgres")).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create a database");
        self.url(name)
    }
}

pub async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .expect("connect to PostgreSQL")
}

/// A process under test, stopped with SIGTERM (then SIGKILL) on drop.
pub struct Process {
    pub child: Child,
}

impl Process {
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, signal).expect("signal the process");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the process") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(i32::MAX));
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    tenancy_infra::postgres::free_port().expect("a free port")
}

/// Polls `url` until it answers 200 or the timeout passes.
pub async fn wait_until_healthy(url: &str, timeout: Duration) {
    let client = reqwest::Client::new();
    eventually(timeout, &format!("{url} healthy"), || async {
        client
            .get(url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    })
    .await;
}

/// What a check in [`eventually`] gives: `true`/`Some(value)` once it holds.
pub trait Settled {
    type Value;
    fn settled(self) -> Option<Self::Value>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Option<T> {
        self
    }
}

/// Runs `check` until it holds (`true`, or `Some(value)`, which is returned), polling every
/// 25 ms at first and backing off to every 250 ms; fails the test naming `what` once
/// `timeout` has passed. Replaces hand-rolled polling loops and fixed sleeps: a test waits
/// exactly as long as the behaviour takes, and a slow machine only needs the timeout.
pub async fn eventually<S, F, Fut>(timeout: Duration, what: &str, mut check: F) -> S::Value
where
    S: Settled,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(25);
    loop {
        if let Some(value) = check().await.settled() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Starts a service binary listening on `127.0.0.1:<port>` (0: a port the system picks,
/// so parallel tests never race for one) and returns it with its bound address, which the
/// service writes to its `TENANCY_ADDRESS_FILE` once listening.
pub async fn start_service(
    mut command: Command,
    listen_variable: &str,
    port: u16,
) -> (Process, std::net::SocketAddr) {
    let dir = temp_dir();
    let file = dir.path().join("address");
    command
        .env(listen_variable, format!("127.0.0.1:{port}"))
        .env("TENANCY_ADDRESS_FILE", &file);
    let mut process = Process {
        child: command.spawn().expect("start a service"),
    };
    let address = eventually(
        Duration::from_secs(30),
        "the service's bound address",
        || {
            let exited = process.child.try_wait().expect("poll the service");
            assert!(
                exited.is_none(),
                "the service exited at start-up: {exited:?}"
            );
            let address = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            std::future::ready(address)
        },
    )
    .await;
    wait_until_healthy(
        &format!("http://{address}/healthz"),
        Duration::from_secs(30),
    )
    .await;
    (process, address)
}

/// Runs `tenantctl admin create` for real, with the password on stdin.
pub fn tenantctl_admin_create(
    database_url: &str,
    email: &str,
    password: &str,
) -> std::process::Output {
    let mut child = Command::new(binary("tenantctl"))
        .args(["admin", "create", "--email", email])
        .env("TENANCY_DATABASE_URL", database_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tenantctl admin create");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("wait for tenantctl")
}

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "a long enough password";

/// A control plane binary on its own cluster, with one super-admin, and typed helpers.
pub struct ControlPlane {
    pub base_url: String,
    pub client: reqwest::Client,
    /// The key the control plane signs with, so tests can forge tokens it must accept or
    /// refuse.
    pub signing_key: TokenKey,
    signing_pem: String,
    /// The catalog key, so tests can open what the control plane sealed.
    pub sealer: Sealer,
    catalog_key: String,
    pub database_url: String,
    port: u16,
    pub process: Process,
    pub postgres: TestPostgres,
}

impl ControlPlane {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra environment variables (say, `TENANCY_DELETE_GRACE`).
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let postgres = TestPostgres::start();
        let database_url = postgres.create_database("catalog").await;
        let (signing_key, pem) = TokenKey::generate().expect("generate a signing key");
        let signing_pem = secrecy::ExposeSecret::expose_secret(&pem).to_owned();
        let catalog_key = Sealer::generate_key();
        let sealer = Sealer::from_base64(&catalog_key).expect("catalog key");
        let catalog_key = secrecy::ExposeSecret::expose_secret(&catalog_key).to_owned();
        let mut app = Self {
            base_url: String::new(),
            client: reqwest::Client::new(),
            signing_key,
            signing_pem,
            sealer,
            catalog_key,
            database_url,
            port: 0,
            process: Process {
                child: Command::new("true").spawn().expect("a placeholder process"),
            },
            postgres,
        };
        app.restart(env).await;
        let output = tenantctl_admin_create(&app.database_url, ADMIN_EMAIL, ADMIN_PASSWORD);
        assert!(output.status.success(), "admin create failed: {output:?}");
        app
    }

    /// Stops the control plane (SIGKILL if it still runs) and starts it again on the same
    /// port (the first start takes one the system picks), catalog and keys, with `env`
    /// added.
    pub async fn restart(&mut self, env: &[(&str, &str)]) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let (process, address) = start_service(
            self.control_plane_command(env),
            "TENANCY_CONTROL_PLANE_LISTEN",
            self.port,
        )
        .await;
        self.process = process;
        self.port = address.port();
        self.base_url = format!("http://{address}");
    }

    /// Starts another control plane process on the same catalog and keys (a replica, as
    /// behind a load balancer), on a port of its own, with `env` added.
    pub async fn start_replica(&self, env: &[(&str, &str)]) -> (Process, String) {
        let (process, address) = start_service(
            self.control_plane_command(env),
            "TENANCY_CONTROL_PLANE_LISTEN",
            0,
        )
        .await;
        (process, format!("http://{address}"))
    }

    /// The control-plane binary on this catalog and keys: jobs every 300 ms, no warm pool,
    /// `env` added.
    fn control_plane_command(&self, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(binary("control-plane"));
        command
            .env("TENANCY_DATABASE_URL", &self.database_url)
            .env("TENANCY_JWT_SIGNING_KEY", &self.signing_pem)
            .env("TENANCY_CATALOG_KEY", &self.catalog_key)
            .env("TENANCY_JOBS_INTERVAL", "300ms")
            .env("TENANCY_WARM_POOL_SIZE", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    /// Stops the control plane process (SIGKILL), say, to work on its catalog.
    pub fn stop(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
    }

    /// This installation's id (the ownership mark on its objects), from the catalog.
    pub async fn installation_id(&self) -> uuid::Uuid {
        let mut catalog = connect(&self.database_url).await;
        sqlx::query_scalar("SELECT id FROM installation")
            .fetch_one(&mut catalog)
            .await
            .expect("read the installation id")
    }

    /// Registers a database server through the API.
    pub async fn add_server(
        &self,
        token: &str,
        name: &str,
        server: &EmbeddedPostgres,
        max_tenants: i64,
    ) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/servers",
                Some(token),
                Some(json!({
                    "name": name,
                    "host": server.host(),
                    "port": server.port(),
                    "admin_user": tenancy_infra::postgres::SUPERUSER,
                    "admin_password": server.superuser_password(),
                    "max_tenants": max_tenants,
                    "connection_budget": 100,
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Creates a tenant through the API and returns status and body.
    pub async fn create_tenant(&self, token: &str, slug: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            "/v1/tenants",
            Some(token),
            Some(json!({
                "slug": slug,
                "name": format!("{slug} Inc."),
                "plan": "standard",
                "admin_email": format!("owner@{slug}.example"),
                "admin_password": "a long enough password",
            })),
        )
        .await
    }

    /// Starts a `tenant-router` binary on this catalog, trusting this control plane's key.
    pub async fn start_router(&self, env: &[(&str, &str)]) -> TenantRouter {
        let mut command = Command::new(binary("tenant-router"));
        command
            .env("TENANCY_DATABASE_URL", &self.database_url)
            .env("TENANCY_CATALOG_KEY", &self.catalog_key)
            .env("TENANCY_JWT_PUBLIC_KEYS", self.signing_key.public_pem())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let (process, address) = start_service(command, "TENANCY_ROUTER_LISTEN", 0).await;
        TenantRouter {
            base_url: format!("http://{address}"),
            client: reqwest::Client::new(),
            process,
        }
    }

    /// A service token for a tenant, minted through the API.
    pub async fn tenant_token(&self, admin_token: &str, slug: &str, scopes: &[&str]) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/tenants/{slug}/tokens"),
                Some(admin_token),
                Some(json!({ "scopes": scopes, "ttl": 3600 })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// `tenantctl` against this control plane's catalog, stdout and stderr piped.
    fn tenantctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("tenantctl"));
        command
            .args(args)
            .env("TENANCY_DATABASE_URL", &self.database_url)
            .env("TENANCY_CATALOG_KEY", &self.catalog_key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `tenantctl` against this control plane's catalog, with `stdin` piped in.
    pub fn tenantctl(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut child = self
            .tenantctl_command(args)
            .stdin(Stdio::piped())
            .spawn()
            .expect("run tenantctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for tenantctl")
    }

    /// Starts `tenantctl` in the background against this catalog (stdin closed, stdout
    /// and stderr piped), for tests that signal it mid-way.
    pub fn tenantctl_spawn(&self, args: &[&str]) -> Process {
        let child = self
            .tenantctl_command(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("start tenantctl");
        Process { child }
    }

    /// The catalog key (base64), for benchmarks that run `tenantctl` themselves.
    pub fn catalog_key(&self) -> &str {
        &self.catalog_key
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Logs in as the test's super-admin and returns the access token.
    pub async fn admin_token(&self) -> String {
        let response = self
            .client
            .post(self.url("/v1/auth/login"))
            .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
            .send()
            .await
            .expect("log in");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("a JSON body");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Sends a request with a bearer token and returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send the request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read the body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }
}

/// A `tenant-router` binary under test.
pub struct TenantRouter {
    pub base_url: String,
    pub client: reqwest::Client,
    pub process: Process,
}

impl TenantRouter {
    /// Sends a request with a bearer token; returns status, Retry-After and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send the request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read the body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// Asserts that a response is a problem document with this status and code.
#[track_caller]
pub fn assert_problem(status: u16, body: &Value, expected_status: u16, expected_code: &str) {
    assert_eq!(status, expected_status, "unexpected status; body: {body}");
    assert_eq!(body["code"], expected_code, "unexpected code; body: {body}");
    assert_eq!(
        body["status"], expected_status,
        "problem status; body: {body}"
    );
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "not a problem document: {body}"
    );
}
