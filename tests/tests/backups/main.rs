//! Tenant backups (`tenantctl backup`) on a real PostgreSQL server and a real S3 protocol
//! endpoint: streamed, hashed, verified; failures mid-stream leave nothing behind.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tenancy_infra::{EmbeddedS3, S3Credentials};
use tenancy_tests::{ControlPlane, FinalBackup, connect, eventually};

mod control_plane;
mod restore;

const BUCKET: &str = "backups";

fn credentials() -> S3Credentials {
    S3Credentials {
        access_key: "backup-access".to_owned(),
        secret_key: "backup-secret-0123456789".to_owned(),
    }
}

struct Fixture {
    app: ControlPlane,
    s3: Option<EmbeddedS3>,
    s3_dir: tempfile::TempDir,
    s3_port: u16,
}

impl Fixture {
    async fn start(slugs: &[&str]) -> Self {
        let s3_dir = tenancy_tests::temp_dir();
        let s3 = EmbeddedS3::start(s3_dir.path().join("store"), 0, credentials())
            .await
            .expect("start the S3 endpoint");
        s3.ensure_bucket(BUCKET).await.expect("create the bucket");
        let s3_port = s3.address().port();
        // The control plane backs up too (on request, before a drop; on schedule when a
        // test restarts it with an interval).
        let env = Self::control_plane_env(s3_port, "false");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let app = ControlPlane::start_with(&env).await;
        let admin = app.admin_token().await;
        app.add_server(&admin, "main", &app.postgres.server, 50)
            .await;
        for slug in slugs {
            let (status, body) = app.create_tenant(&admin, slug).await;
            assert_eq!(status, 201, "{body}");
        }
        Self {
            app,
            s3: Some(s3),
            s3_dir,
            s3_port,
        }
    }

    fn control_plane_env(s3_port: u16, scheduled: &str) -> Vec<(&'static str, String)> {
        vec![
            ("TENANCY_S3_BUCKET", BUCKET.to_owned()),
            ("TENANCY_S3_ENDPOINT", format!("http://127.0.0.1:{s3_port}")),
            ("TENANCY_S3_PATH_STYLE", "true".to_owned()),
            ("TENANCY_S3_ACCESS_KEY_ID", credentials().access_key),
            ("TENANCY_S3_SECRET_ACCESS_KEY", credentials().secret_key),
            ("TENANCY_SCHEDULED_BACKUPS", scheduled.to_owned()),
            ("TENANCY_DELETE_GRACE", "0s".to_owned()),
        ]
    }

    fn store_root(&self) -> PathBuf {
        self.s3_dir.path().join("store")
    }

    fn s3_args(&self) -> Vec<String> {
        vec![
            "--s3-bucket".to_owned(),
            BUCKET.to_owned(),
            "--s3-endpoint".to_owned(),
            format!("http://127.0.0.1:{}", self.s3_port),
            "--s3-path-style".to_owned(),
            "--s3-access-key-id".to_owned(),
            credentials().access_key,
            "--s3-secret-access-key".to_owned(),
            credentials().secret_key,
        ]
    }

    /// `--json backup <args> <S3 options>`.
    fn backup_args(&self, args: &[&str]) -> Vec<String> {
        ["--json", "backup"]
            .iter()
            .chain(args)
            .map(|arg| (*arg).to_owned())
            .chain(self.s3_args())
            .collect()
    }

    fn backup(&self, args: &[&str]) -> Output {
        let all = self.backup_args(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.app.tenantctl(&all, "")
    }

    fn spawn_backup(&self, args: &[&str]) -> tenancy_tests::Process {
        let all = self.backup_args(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.app.tenantctl_spawn(&all)
    }

    async fn tenant_database(&self, slug: &str) -> (String, sqlx::PgConnection) {
        let mut catalog = connect(&self.app.database_url).await;
        let name: String = sqlx::query_scalar(
            "SELECT database_name FROM tenants WHERE slug = $1 AND status <> 'deleted'",
        )
        .bind(slug)
        .fetch_one(&mut catalog)
        .await
        .expect("the tenant's database");
        let connection = connect(&self.app.postgres.url(&name)).await;
        (name, connection)
    }

    fn pending_uploads(&self) -> Vec<String> {
        self.s3
            .as_ref()
            .expect("the S3 endpoint runs")
            .pending_multipart_uploads()
            .expect("read the store")
    }

    /// Every stored object under `tenants/`.
    fn objects(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![self.store_root().join(BUCKET).join("tenants")];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    /// Parts of multipart uploads in the store (s3s-fs keeps them at its root).
    fn stored_parts(&self) -> usize {
        std::fs::read_dir(self.store_root())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| {
                        entry
                            .file_name()
                            .to_str()
                            .is_some_and(|name| name.starts_with(".upload_id-"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "tenantctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn reader_roles(app: &ControlPlane) -> i64 {
    let mut admin = connect(&app.postgres.url("postgres")).await;
    sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenancy_backup_%'")
        .fetch_one(&mut admin)
        .await
        .expect("count reader roles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_is_streamed_hashed_listed_and_verified() {
    let fixture = Fixture::start(&["acme", "globex"]).await;
    let (_, mut database) = fixture.tenant_database("acme").await;
    sqlx::query(
        "INSERT INTO app.customers (code, name, email, address) \
         SELECT 'C-' || g, 'Ünïcødé ''quoted'' \\ name ' || g, 'c' || g || '@example.com', \
                E'line one\\nline two\\ttab' FROM generate_series(1, 5000) g",
    )
    .execute(&mut database)
    .await
    .expect("seed customers");

    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let backup = &created[0];
    let id = backup["id"].as_str().expect("id").to_owned();
    assert_eq!(backup["tenant"], "acme");
    assert_eq!(backup["status"], "complete");
    assert_eq!(backup["trigger"], "manual");
    let bytes = backup["bytes"].as_i64().expect("bytes");
    assert!(bytes > 10_000, "{backup}");
    assert_eq!(backup["sha256"].as_str().expect("sha256").len(), 64);
    let key = backup["object_key"].as_str().expect("object_key");
    let tenant_id = backup["tenant_id"].as_str().expect("tenant_id");
    assert!(key.starts_with(&format!("tenants/{tenant_id}/")), "{key}");
    assert!(!key.contains("acme"), "no customer name in the key: {key}");

    // The object in the store is exactly what was recorded.
    let objects = fixture.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    let stored = std::fs::read(&objects[0]).expect("read the object");
    assert_eq!(i64::try_from(stored.len()).expect("size"), bytes);
    assert_eq!(&stored[..5], b"PGDMP", "a pg_dump custom-format archive");
    assert!(fixture.pending_uploads().is_empty());
    // The reader role pg_dump logged in as is gone.
    assert_eq!(reader_roles(&fixture.app).await, 0);

    let listed = json_of(&fixture.backup(&["list", "--tenant", "acme"]));
    assert_eq!(listed.as_array().expect("list").len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let none = json_of(&fixture.backup(&["list", "--tenant", "globex"]));
    assert_eq!(none, Value::Array(vec![]));

    let verified = json_of(&fixture.backup(&["verify", &id]));
    assert_eq!(verified["bytes"], bytes);
    assert_eq!(verified["sha256"], backup["sha256"]);
    assert!(
        verified["entries"].as_u64().expect("entries") > 20,
        "{verified}"
    );

    // One flipped byte: verify refuses it.
    let mut corrupted = stored.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x01;
    std::fs::write(&objects[0], &corrupted).expect("flip a byte");
    let output = fixture.backup(&["verify", &id]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("does not match the backup"),
        "{}",
        stderr(&output)
    );

    // --all backs up every tenant.
    let all = json_of(&fixture.backup(&["create", "--all"]));
    let mut tenants: Vec<&str> = all
        .as_array()
        .expect("backups")
        .iter()
        .map(|backup| backup["tenant"].as_str().expect("tenant"))
        .collect();
    tenants.sort_unstable();
    assert_eq!(tenants, ["acme", "globex"]);

    let output = fixture.backup(&["create", "--tenant", "nobody"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no tenant nobody"),
        "{}",
        stderr(&output)
    );
}

/// A database big enough that its dump takes several 8 MiB parts.
async fn seed_big(database: &mut sqlx::PgConnection) {
    sqlx::query(
        "INSERT INTO app.customers (code, name, address) \
         SELECT 'C-' || g, md5(g::text), \
                (SELECT string_agg(md5(random()::text || g::text || i::text), '') FROM generate_series(1, 30) i) \
         FROM generate_series(1, 40000) g",
    )
    .execute(database)
    .await
    .expect("seed a big table");
}

fn pg_dump_pids(database: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("pg_dump") && cmdline.contains(database) {
            pids.push(pid);
        }
    }
    pids
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    eventually(Duration::from_secs(60), what, async || condition()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_cut_short_leaves_nothing_behind() {
    let mut fixture = Fixture::start(&["acme"]).await;
    let (database_name, mut database) = fixture.tenant_database("acme").await;
    seed_big(&mut database).await;

    // pg_dump killed mid-stream.
    let mut run = fixture.spawn_backup(&["create", "--tenant", "acme"]);
    wait_for("a first part in the store", || fixture.stored_parts() > 0).await;
    let pids = pg_dump_pids(&database_name);
    assert!(!pids.is_empty(), "pg_dump runs");
    for pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert_ne!(run.wait_exit(Duration::from_secs(60)), Some(0));
    let mut message = String::new();
    std::io::Read::read_to_string(run.child.stderr.as_mut().expect("stderr"), &mut message)
        .expect("read stderr");
    assert!(message.contains("pg_dump failed"), "{message}");
    assert!(
        fixture.pending_uploads().is_empty(),
        "the upload was aborted"
    );
    assert_eq!(fixture.stored_parts(), 0);
    assert!(fixture.objects().is_empty());
    assert_eq!(
        json_of(&fixture.backup(&["list"])),
        Value::Array(vec![]),
        "nothing listed"
    );
    assert_eq!(reader_roles(&fixture.app).await, 0);

    // The S3 endpoint goes away mid-upload.
    let mut run = fixture.spawn_backup(&["create", "--tenant", "acme"]);
    wait_for("a first part in the store", || fixture.stored_parts() > 0).await;
    fixture
        .s3
        .take()
        .expect("the S3 endpoint runs")
        .stop()
        .await;
    assert_ne!(run.wait_exit(Duration::from_secs(120)), Some(0));
    let mut message = String::new();
    std::io::Read::read_to_string(run.child.stderr.as_mut().expect("stderr"), &mut message)
        .expect("read stderr");
    assert!(message.contains("S3"), "{message}");
    assert!(fixture.objects().is_empty());

    // Back up: the next backup first aborts the upload the failed one could not.
    let s3 = EmbeddedS3::start(fixture.store_root(), fixture.s3_port, credentials())
        .await
        .expect("restart the S3 endpoint");
    fixture.s3 = Some(s3);
    assert_eq!(
        fixture.pending_uploads().len(),
        1,
        "left by the failed backup"
    );
    let listed = json_of(&fixture.backup(&["list"]));
    assert_eq!(listed, Value::Array(vec![]), "nothing listed");
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    assert_eq!(created.as_array().expect("backups").len(), 1);
    assert!(fixture.pending_uploads().is_empty(), "aborted");
    assert_eq!(fixture.stored_parts(), 0);
    assert_eq!(fixture.objects().len(), 1);
    let bytes = created[0]["bytes"].as_i64().expect("bytes");
    assert!(bytes > 16 << 20, "several parts: {bytes} bytes");
    let id = created[0]["id"].as_str().expect("id");
    json_of(&fixture.backup(&["verify", id]));
}

/// Rows in every table of the tenant's schema, including odd text, big numerics, JSON.
const SEED: &str = "
SET search_path = app;
INSERT INTO app.users (email, display_name, password_hash)
  SELECT 'user' || g || '@example.com', 'Ünïcødé ''quoted'' \\ ' || g, 'hash-' || g FROM generate_series(1, 50) g;
INSERT INTO app.roles (name, description) VALUES ('clerk', E'quotes '' and \\\\ backslash, tab\\there');
INSERT INTO app.role_permissions SELECT id, 'customers.read' FROM app.roles WHERE name = 'clerk';
INSERT INTO app.user_roles SELECT u.id, r.id FROM app.users u, app.roles r WHERE r.name = 'clerk';
INSERT INTO app.sessions (user_id, client_ip, user_agent)
  SELECT id, '192.0.2.7', 'seed/1.0 (x; y)' FROM app.users;
INSERT INTO app.refresh_tokens (session_id, token_hash, expires_at)
  SELECT id, sha256(convert_to(id::text, 'UTF8')), now() + interval '1 day' FROM app.sessions;
INSERT INTO app.login_failures (email, failures, window_start)
  SELECT email, 2, now() FROM app.users LIMIT 10;
INSERT INTO app.audit_log (actor, action, entity_type, entity_id, after)
  SELECT 'seed', 'create', 'customer', g::text, jsonb_build_object('n', g, 'emoji', '😀', 'nul', 'a\\u0000b'::text)
  FROM generate_series(1, 100) g;
INSERT INTO app.customers (code, name, email, address)
  SELECT 'C-' || g, 'Customer ' || g || ' 中文 ' || repeat('x', g % 50), 'c' || g || '@example.com',
         E'line one\\nline two\\ttab' FROM generate_series(1, 5000) g;
INSERT INTO app.suppliers (code, name) SELECT 'S-' || g, 'Supplier ' || g FROM generate_series(1, 20) g;
INSERT INTO app.products (sku, name, unit_price)
  SELECT 'P-' || g, 'Product ' || g, 99999999999999.9999 - g / 7.0 FROM generate_series(1, 100) g;
INSERT INTO app.purchase_orders (supplier_id, notes) SELECT id, 'order for ' || code FROM app.suppliers;
INSERT INTO app.purchase_order_lines (order_id, line_no, product_id, quantity, unit_price)
  SELECT o.id, 1, p.id, 3.3333, 12345.6789 FROM app.purchase_orders o,
         (SELECT id FROM app.products ORDER BY sku LIMIT 1) p;
";

/// A checksum of every table of the tenant's schema.
async fn checksums(database: &mut sqlx::PgConnection) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'app' ORDER BY tablename",
    )
    .fetch_all(&mut *database)
    .await
    .expect("list the tables");
    let mut sums = Vec::new();
    for table in tables {
        let sum: String = sqlx::query_scalar(&format!(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM app.{table} t"
        ))
        .fetch_one(&mut *database)
        .await
        .expect("checksum a table");
        sums.push((table, sum));
    }
    sums
}

async fn database_names(app: &ControlPlane, tenant_id: &str) -> Vec<String> {
    let mut admin = connect(&app.postgres.url("postgres")).await;
    sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1")
        .bind(format!("t_{}%", tenant_id.replace('-', "")))
        .fetch_all(&mut admin)
        .await
        .expect("list the tenant's databases")
}

async fn backups_of(fixture: &Fixture, token: &str, slug: &str) -> Vec<Value> {
    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::GET,
            &format!("/v1/tenants/{slug}/backups"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").clone()
}

async fn wait_for_backups(fixture: &Fixture, token: &str, slug: &str, count: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(60),
        &format!("{count} backup(s) of {slug}"),
        || async {
            let items = backups_of(fixture, token, slug).await;
            (items.len() >= count).then_some(items)
        },
    )
    .await
}

/// One write through the router: its sequence number, the answer's status and `code`.
type Write = (usize, u16, String);

/// The codes of the writer's customers in a database.
async fn written(url: &str) -> std::collections::BTreeSet<String> {
    let mut connection = connect(url).await;
    sqlx::query_scalar::<_, String>("SELECT code FROM app.customers WHERE code LIKE 'W-%'")
        .fetch_all(&mut connection)
        .await
        .expect("read the writes")
        .into_iter()
        .collect()
}
