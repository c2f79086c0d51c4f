//! `tenantctl dev`, run as a user would: it comes up, answers, stops on Ctrl-C, and a second
//! run reuses the data.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;
use reqwest::Method;
use serde_json::json;
use tenancy_tests::{Process, binary, free_port, temp_dir};

/// The banner lines of one run, read until the curl examples appear.
struct Run {
    process: Process,
    banner: Vec<String>,
    /// Lines printed after the banner.
    lines: mpsc::Receiver<String>,
}

impl Run {
    fn start(data_dir: &std::path::Path, control_port: u16, router_port: u16) -> Self {
        let mut child = Command::new(binary("tenantctl"))
            .args(["dev", "--data-dir"])
            .arg(data_dir)
            .args(["--control-plane-port", &control_port.to_string()])
            .args(["--router-port", &router_port.to_string()])
            .env_remove("DATABASE_URL")
            .env_remove("TENANCY_S3_ENDPOINT")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tenantctl dev");
        let stdout = child.stdout.take().expect("stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the banner so the process never writes to a closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut banner = Vec::new();
        loop {
            let line = lines_rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no complete banner; got {banner:#?}"));
            let done = line.contains("Ctrl-C stops everything");
            banner.push(line);
            if done {
                break;
            }
        }
        Self {
            process: Process { child },
            banner,
            lines: lines_rx,
        }
    }

    /// The value of an `export NAME=` line of the banner.
    fn exported(&self, name: &str) -> String {
        let prefix = format!("export {name}=");
        self.banner
            .iter()
            .find_map(|line| line.trim().strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no `{prefix}` line in the banner: {:#?}", self.banner))
            .to_owned()
    }

    /// The next line after the banner that starts with `prefix`.
    fn wait_for(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no line starting `{prefix}`"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// The value after `label` on its banner line.
    fn field(&self, label: &str) -> String {
        self.banner
            .iter()
            .find_map(|line| line.strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` in the banner: {:#?}", self.banner))
            .trim()
            .to_owned()
    }

    fn url(&self, label: &str) -> String {
        self.field(label)
            .split_whitespace()
            .next()
            .expect("a URL")
            .to_owned()
    }

    fn admin(&self) -> (String, String) {
        let credentials = self.field("super-admin:");
        let (email, password) = credentials.split_once(" / ").expect("email / password");
        (email.to_owned(), password.to_owned())
    }
}

async fn login(base: &str, email: &str, password: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("log in");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    body["access_token"].as_str().expect("token").to_owned()
}

/// The items of a list page.
async fn items(client: &reqwest::Client, url: &str, token: &str) -> Vec<serde_json::Value> {
    let page: serde_json::Value = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    page["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn dev_comes_up_stops_cleanly_and_reuses_its_data() {
    let dir = temp_dir();
    let data_dir = dir.path().join("dev");
    let (control_port, router_port) = (free_port(), free_port());
    let client = reqwest::Client::new();

    let mut first = Run::start(&data_dir, control_port, router_port);
    assert!(
        first.banner.iter().any(|line| line.contains("(created)")),
        "{:#?}",
        first.banner
    );
    let control = first.url("control plane:");
    assert_eq!(control, format!("http://127.0.0.1:{control_port}"));
    let router = first.url("tenant router:");
    // The portal it prints answers with its sign-in form.
    let portal = first.url("portal:");
    assert_eq!(portal, format!("{control}/portal"));
    let response = client
        .get(format!("{portal}/login"))
        .send()
        .await
        .expect("portal");
    assert_eq!(response.status(), 200);
    for base in [&control, &router] {
        let response = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(response.status(), 200, "{base}");
    }
    // The S3 endpoint it prints answers (unsigned requests are refused, as S3 does).
    let s3 = first.url("s3 endpoint:");
    let response = client
        .get(format!("{s3}/tenancy-backups"))
        .send()
        .await
        .expect("s3");
    assert_eq!(response.status(), 403);

    // The printed credentials work, and so does the printed token.
    let (email, password) = first.admin();
    let token = login(&control, &email, &password).await;
    let printed_token = first.exported("TOKEN");
    let response = client
        .request(Method::GET, format!("{control}/v1/plans"))
        .bearer_auth(&printed_token)
        .send()
        .await
        .expect("plans");
    assert_eq!(response.status(), 200);
    let response = client
        .post(format!("{control}/v1/plans"))
        .bearer_auth(&token)
        .json(&json!({ "name": "kept", "limits": {
            "max_users": 3, "max_storage_mb": 100, "requests_per_minute": 60,
            "max_connections": 2, "statement_timeout_ms": 1000, "backup_retention_days": 3 } }))
        .send()
        .await
        .expect("create a plan");
    assert_eq!(response.status(), 201);

    // The demo tenant is served by the router with the printed service token.
    let tenant_token = first.exported("TENANT_TOKEN");
    assert!(
        first
            .banner
            .iter()
            .any(|line| line.starts_with("demo tenant:"))
    );
    // It gets sample data through the router, once.
    let seeded = first.wait_for("demo tenant seeded:");
    assert!(
        seeded.contains("25 customers") && seeded.contains("15 purchase orders"),
        "{seeded}"
    );
    let count = async |path: &str| {
        items(&client, &format!("{router}{path}"), &tenant_token)
            .await
            .len()
    };
    assert_eq!(count("/v1/customers?limit=500").await, 25);
    assert_eq!(count("/v1/products?limit=500").await, 40);
    assert_eq!(count("/v1/purchase-orders?limit=500").await, 15);
    let response = client
        .post(format!("{router}/v1/customers"))
        .bearer_auth(&tenant_token)
        .json(&json!({ "code": "C-001", "name": "First Customer" }))
        .send()
        .await
        .expect("create a customer");
    assert_eq!(response.status(), 201);
    let found = items(
        &client,
        &format!("{router}/v1/customers?q=c-001"),
        &tenant_token,
    )
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["code"], "C-001");

    // The demo tenant's first admin signs in through the router with the printed line.
    let sign_in = first
        .banner
        .iter()
        .find(|line| line.contains("/v1/auth/login") && line.contains(&router))
        .expect("a sign-in line");
    let slug = sign_in
        .split("x-tenant: ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("the tenant header");
    let credentials: serde_json::Value = sign_in
        .split("-d '")
        .nth(1)
        .and_then(|rest| rest.strip_suffix('\''))
        .and_then(|body| serde_json::from_str(body).ok())
        .expect("the credentials");
    let response = client
        .post(format!("{router}/v1/auth/login"))
        .header("x-tenant", slug)
        .json(&credentials)
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 200);
    let tokens: serde_json::Value = response.json().await.expect("json");
    let me: serde_json::Value = client
        .get(format!("{router}/v1/auth/me"))
        .bearer_auth(tokens["access_token"].as_str().expect("a token"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["user"]["email"], credentials["email"]);

    // Ctrl-C: everything stops, including the PostgreSQL server.
    let postmaster_pid = data_dir.join("postgres").join("postmaster.pid");
    assert!(postmaster_pid.exists());
    first.process.signal(Signal::SIGINT);
    assert_eq!(first.process.wait_exit(Duration::from_secs(60)), Some(0));
    assert!(!postmaster_pid.exists(), "PostgreSQL was stopped");
    assert!(
        client
            .get(format!("{control}/healthz"))
            .send()
            .await
            .is_err(),
        "the control plane is down"
    );
    let pg_version =
        std::fs::metadata(data_dir.join("postgres").join("PG_VERSION")).expect("cluster");

    // A second run reuses the cluster, the admin and the data.
    let mut second = Run::start(&data_dir, control_port, router_port);
    assert!(
        second
            .banner
            .iter()
            .any(|line| line.contains("(reused from an earlier run)"))
    );
    assert_eq!(second.admin(), (email.clone(), password.clone()));
    let again = std::fs::metadata(data_dir.join("postgres").join("PG_VERSION")).expect("cluster");
    assert_eq!(
        pg_version.modified().ok(),
        again.modified().ok(),
        "no second initdb"
    );
    let control = second.url("control plane:");
    let token = login(&control, &email, &password).await;
    let plans: serde_json::Value = client
        .get(format!("{control}/v1/plans"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("plans")
        .json()
        .await
        .expect("json");
    assert!(
        plans["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|plan| plan["name"] == "kept"),
        "{plans}"
    );
    // The demo tenant is not seeded twice.
    let customers = items(
        &client,
        &format!("{}/v1/customers?limit=500", second.url("tenant router:")),
        &second.exported("TENANT_TOKEN"),
    )
    .await;
    assert_eq!(customers.len(), 26);
    second.process.signal(Signal::SIGINT);
    assert_eq!(second.process.wait_exit(Duration::from_secs(60)), Some(0));
}
