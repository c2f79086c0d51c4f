//! The end-to-end test harness: real binaries, a real PostgreSQL cluster per test, real
//! HTTP. Each helper fails loudly with what is missing; nothing is skipped.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use tenancy_core::sealing::Sealer;
use tenancy_core::token::TokenKey;
use tenancy_infra::EmbeddedPostgres;

pub use reqwest;
pub use serde_json::json;

#[cfg(test)]
mod architecture;
pub mod bench;
mod cluster;
mod migrations;
mod process;

pub use cluster::{TestPostgres, connect, scratch_root, temp_dir};
pub use migrations::{built_in_tenant_steps, built_in_tenant_version, write_built_in_tenant_steps};
pub use process::{
    Process, Settled, binary, eventually, free_port, start_service, wait_until_healthy,
};

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
    /// The key routers sign user tokens with (each router started here shares it, as
    /// replicas behind a load balancer do).
    pub router_signing_pem: String,
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
        Self::start_on(TestPostgres::start(), env).await
    }

    /// Starts on a cluster of the caller's (its catalog is created there).
    pub async fn start_on(postgres: TestPostgres, env: &[(&str, &str)]) -> Self {
        let database_url = postgres.create_database("catalog").await;
        let (signing_key, pem) = TokenKey::generate().expect("generate a signing key");
        let signing_pem = secrecy::ExposeSecret::expose_secret(&pem).to_owned();
        let (_, router_pem) = TokenKey::generate().expect("generate a router signing key");
        let router_signing_pem = secrecy::ExposeSecret::expose_secret(&router_pem).to_owned();
        let catalog_key = Sealer::generate_key();
        let sealer = Sealer::from_base64(&catalog_key).expect("catalog key");
        let catalog_key = secrecy::ExposeSecret::expose_secret(&catalog_key).to_owned();
        let mut app = Self {
            base_url: String::new(),
            client: reqwest::Client::new(),
            signing_key,
            signing_pem,
            router_signing_pem,
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
            .env("TENANCY_STORAGE_SAMPLE_INTERVAL", "300ms")
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
            .env("TENANCY_ROUTER_SIGNING_KEYS", &self.router_signing_pem)
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

    /// `tenantctl` against this control plane's catalog (with its signing key, as an
    /// operator's environment has), stdout and stderr piped.
    fn tenantctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("tenantctl"));
        command
            .args(args)
            .env("TENANCY_DATABASE_URL", &self.database_url)
            .env("TENANCY_CATALOG_KEY", &self.catalog_key)
            .env("TENANCY_JWT_SIGNING_KEY", &self.signing_pem)
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
        send(&self.client, method, self.url(path), token, body).await
    }

    /// `GET /v1/tenants/{slug}`: the tenant's detail.
    pub async fn tenant(&self, token: &str, slug: &str) -> (u16, Value) {
        let path = format!("/v1/tenants/{slug}");
        self.call(reqwest::Method::GET, &path, Some(token), None)
            .await
    }

    /// `POST /v1/tenants/{slug}/suspend`.
    pub async fn suspend(&self, token: &str, slug: &str) -> (u16, Value) {
        let path = format!("/v1/tenants/{slug}/suspend");
        self.call(reqwest::Method::POST, &path, Some(token), None)
            .await
    }

    /// `POST /v1/tenants/{slug}/resume`.
    pub async fn resume(&self, token: &str, slug: &str) -> (u16, Value) {
        let path = format!("/v1/tenants/{slug}/resume");
        self.call(reqwest::Method::POST, &path, Some(token), None)
            .await
    }

    /// `DELETE /v1/tenants/{slug}`, with its final backup (the default) or, with
    /// `FinalBackup::Skip`, without one (`?final_backup=skip`).
    pub async fn delete_tenant(
        &self,
        token: &str,
        slug: &str,
        final_backup: FinalBackup,
    ) -> (u16, Value) {
        let path = match final_backup {
            FinalBackup::Required => format!("/v1/tenants/{slug}"),
            FinalBackup::Skip => format!("/v1/tenants/{slug}?final_backup=skip"),
        };
        self.call(reqwest::Method::DELETE, &path, Some(token), None)
            .await
    }

    /// Deletes a tenant (no grace period configured) and waits until it is dropped: the
    /// request drops it (200 `deleted`) or, when the deletions job took the tenant's lock
    /// first, the job does (202 `deleting`, then `deleted`): a request never waits on a
    /// busy tenant. Returns the deleted tenant.
    pub async fn delete_tenant_now(
        &self,
        token: &str,
        slug: &str,
        final_backup: FinalBackup,
    ) -> Value {
        let (status, body) = self.delete_tenant(token, slug, final_backup).await;
        match (status, body["status"].as_str()) {
            (200, Some("deleted")) => body,
            (202, Some("deleting")) => {
                let what = format!("{slug} dropped by the jobs");
                eventually(std::time::Duration::from_secs(20), &what, async || {
                    let (status, body) = self.tenant(token, slug).await;
                    if status == 200 && body["status"] == "deleted" {
                        Ok(body)
                    } else {
                        Err(format!("{status} {body}"))
                    }
                })
                .await
            }
            _ => panic!("{slug} was not deleted: {status} {body}"),
        }
    }

    /// `GET /v1/tenants/{slug}/backups`.
    pub async fn backups(&self, token: &str, slug: &str) -> (u16, Value) {
        let path = format!("/v1/tenants/{slug}/backups");
        self.call(reqwest::Method::GET, &path, Some(token), None)
            .await
    }

    /// `GET /v1/tenants/{slug}/usage`.
    pub async fn usage(&self, token: &str, slug: &str) -> (u16, Value) {
        let path = format!("/v1/tenants/{slug}/usage");
        self.call(reqwest::Method::GET, &path, Some(token), None)
            .await
    }
}

/// Whether a deletion takes a final backup first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalBackup {
    Required,
    Skip,
}

/// Sends a request (a bearer token and a JSON body when given); returns the status and the
/// body as JSON (a body that is not JSON comes back as a JSON string).
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
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

/// A `tenant-router` binary under test.
pub struct TenantRouter {
    pub base_url: String,
    pub client: reqwest::Client,
    pub process: Process,
}

impl TenantRouter {
    /// Sends a request with a bearer token; returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        send(&self.client, method, url, token, body).await
    }

    /// `GET /v1/customers` (a page).
    pub async fn customers(&self, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, "/v1/customers", Some(token), None)
            .await
    }

    /// The router's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .expect("ask for the metrics")
            .text()
            .await
            .expect("read the metrics")
    }

    /// One series' value (`name{labels}` as printed), if reported.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// The sum of the values of the series whose lines `matches` (say, one metric over
    /// every server, or every route's answers with one status).
    pub async fn metric_sum(&self, matches: impl Fn(&str) -> bool) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|line| !line.starts_with('#') && matches(line))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
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
