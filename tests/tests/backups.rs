//! Tenant backups (`tenantctl backup`) on a real PostgreSQL server and a real S3 protocol
//! endpoint: streamed, hashed, verified; failures mid-stream leave nothing behind.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tenancy_infra::{EmbeddedS3, S3Credentials};
use tenancy_tests::{ControlPlane, connect, eventually};

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
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
INSERT INTO app.refresh_tokens (user_id, token_hash, expires_at)
  SELECT id, sha256(convert_to(email, 'UTF8')), now() + interval '1 day' FROM app.users;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_brings_back_exactly_the_backed_up_data_and_the_router_follows() {
    let fixture = Fixture::start(&["acme", "globex"]).await;
    let (_, mut database) = fixture.tenant_database("acme").await;
    sqlx::raw_sql(SEED)
        .execute(&mut database)
        .await
        .expect("seed every table");
    let before = checksums(&mut database).await;
    assert!(before.len() >= 12, "{before:?}");

    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();
    let tenant_id = created[0]["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_owned();

    // The tenant goes on working after the backup.
    let admin = fixture.app.admin_token().await;
    let router = fixture.app.start_router(&[]).await;
    let token = fixture
        .app
        .tenant_token(&admin, "acme", &["customers.read", "customers.write"])
        .await;
    let (status, kept) = router
        .call(
            reqwest::Method::GET,
            "/v1/customers?limit=1",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{kept}");
    let kept_id = kept["items"][0]["id"]
        .as_str()
        .expect("a customer")
        .to_owned();
    let (status, added) = router
        .call(
            reqwest::Method::POST,
            "/v1/customers",
            Some(&token),
            Some(serde_json::json!({ "code": "AFTER-1", "name": "Added after the backup" })),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let added_id = added["id"].as_str().expect("id").to_owned();
    sqlx::raw_sql(
        "SET search_path = app; DELETE FROM app.customers WHERE code LIKE 'C-1%'; \
         UPDATE app.products SET unit_price = 1; \
         INSERT INTO app.purchase_orders (supplier_id) SELECT id FROM app.suppliers LIMIT 3;",
    )
    .execute(&mut database)
    .await
    .expect("change the data");
    assert_ne!(checksums(&mut database).await, before);
    drop(database);

    // Another tenant's backup is refused for this tenant.
    let output = fixture.backup(&["restore", &id, "--tenant", "globex"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("belongs to tenant acme, not globex"),
        "{}",
        stderr(&output)
    );

    let restored = json_of(&fixture.backup(&["restore", &id, "--tenant", "acme"]));
    let new_database = restored["database"].as_str().expect("database").to_owned();
    assert_ne!(restored["previous_database"], restored["database"]);
    // The catalog points at the restored database; the replaced one is kept, renamed,
    // closed to the tenant role, until TENANCY_RESTORE_KEEP has passed.
    let kept_database = restored["kept_database"].as_str().expect("kept").to_owned();
    let mut names = vec![new_database.clone(), kept_database.clone()];
    names.sort();
    assert_eq!(database_names(&fixture.app, &tenant_id).await, names);
    assert!(
        !names.contains(
            &restored["previous_database"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        )
    );
    let mut admin = connect(&fixture.app.postgres.url("postgres")).await;
    let role = format!("t_{}_app", tenant_id.replace('-', ""));
    let (role_may_connect, public_may_connect): (bool, bool) = sqlx::query_as(
        "SELECT has_database_privilege($1, $2, 'CONNECT'), has_database_privilege('public', $2, 'CONNECT')",
    )
    .bind(&role)
    .bind(&kept_database)
    .fetch_one(&mut admin)
    .await
    .expect("check the kept database");
    assert!(
        !role_may_connect && !public_may_connect,
        "the kept database is closed"
    );
    let (_, mut database) = fixture.tenant_database("acme").await;
    assert_eq!(
        checksums(&mut database).await,
        before,
        "exactly the backed-up data"
    );
    // Sequences continue after the backed-up values.
    let number: String = sqlx::query_scalar(
        "INSERT INTO app.purchase_orders (supplier_id) SELECT id FROM app.suppliers LIMIT 1 RETURNING number",
    )
    .fetch_one(&mut database)
    .await
    .expect("a new order");
    assert_eq!(number, "PO-000021");

    // The router serves the restored database: the customer added after the backup is
    // gone, the others are there, writes work (the tenant role's grants are back).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = router
            .call(
                reqwest::Method::GET,
                &format!("/v1/customers/{added_id}"),
                Some(&token),
                None,
            )
            .await;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the router still serves the old database: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = router
        .call(
            reqwest::Method::GET,
            &format!("/v1/customers/{kept_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = router
        .call(
            reqwest::Method::POST,
            "/v1/customers",
            Some(&token),
            Some(serde_json::json!({ "code": "AFTER-2", "name": "Written after the restore" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // The tenant role still reaches only its own database.
    let mut catalog = connect(&fixture.app.database_url).await;
    let role_ok: bool =
        sqlx::query_scalar("SELECT NOT has_database_privilege('public', $1, 'CONNECT')")
            .bind(&new_database)
            .fetch_one(&mut database)
            .await
            .expect("check PUBLIC");
    assert!(role_ok, "PUBLIC may not connect to the restored database");
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'tenant.restore'")
            .fetch_one(&mut catalog)
            .await
            .expect("read the audit log");
    assert_eq!(audit, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_backup_is_refused_before_any_database_is_created() {
    let fixture = Fixture::start(&["acme"]).await;
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();
    let tenant_id = created[0]["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_owned();
    let databases = database_names(&fixture.app, &tenant_id).await;
    let objects = fixture.objects();
    let mut stored = std::fs::read(&objects[0]).expect("read the object");
    let last = stored.len() - 1;
    stored[last] ^= 0x80;
    std::fs::write(&objects[0], &stored).expect("flip a byte");

    let output = fixture.backup(&["restore", &id]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("does not match the backup"),
        "{}",
        stderr(&output)
    );
    assert_eq!(database_names(&fixture.app, &tenant_id).await, databases);
    let mut catalog = connect(&fixture.app.database_url).await;
    let restores: i64 = sqlx::query_scalar("SELECT count(*) FROM restores")
        .fetch_one(&mut catalog)
        .await
        .expect("count restores");
    assert_eq!(restores, 0, "nothing was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_keeps_what_the_plan_says_and_always_the_newest() {
    // Both tenants are on the standard plan: 30 days.
    let fixture = Fixture::start(&["acme", "globex"]).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
        ids.push(created[0]["id"].as_str().expect("id").to_owned());
    }
    let mut old = Vec::new();
    for _ in 0..2 {
        let created = json_of(&fixture.backup(&["create", "--tenant", "globex"]));
        old.push(created[0]["id"].as_str().expect("id").to_owned());
    }
    let mut catalog = connect(&fixture.app.database_url).await;
    for (id, days) in ids
        .iter()
        .zip([45, 31, 10, 1])
        .chain(old.iter().zip([60, 40]))
    {
        sqlx::query(
            "UPDATE backups SET started_at = now() - make_interval(days => $2), \
             completed_at = now() - make_interval(days => $2) WHERE id = $1::uuid",
        )
        .bind(id)
        .bind(days)
        .execute(&mut catalog)
        .await
        .expect("age a backup");
    }
    assert_eq!(fixture.objects().len(), 6);

    let planned = json_of(&fixture.backup(&["prune", "--dry-run"]));
    let mut planned: Vec<&str> = planned
        .as_array()
        .expect("backups")
        .iter()
        .map(|backup| backup["id"].as_str().expect("id"))
        .collect();
    planned.sort_unstable();
    let mut expected = vec![ids[0].as_str(), ids[1].as_str(), old[0].as_str()];
    expected.sort_unstable();
    assert_eq!(planned, expected, "past 30 days, but globex's newest stays");
    assert_eq!(fixture.objects().len(), 6, "a dry run deletes nothing");

    let pruned = json_of(&fixture.backup(&["prune"]));
    assert_eq!(pruned.as_array().expect("backups").len(), 3);
    assert_eq!(fixture.objects().len(), 3);
    let listed = json_of(&fixture.backup(&["list"]));
    let mut left: Vec<&str> = listed
        .as_array()
        .expect("backups")
        .iter()
        .map(|backup| backup["id"].as_str().expect("id"))
        .collect();
    left.sort_unstable();
    let mut kept = vec![ids[2].as_str(), ids[3].as_str(), old[1].as_str()];
    kept.sort_unstable();
    assert_eq!(left, kept);
    // Nothing more to do.
    assert_eq!(json_of(&fixture.backup(&["prune"])), Value::Array(vec![]));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_plane_backs_up_on_request_on_schedule_and_before_a_drop() {
    let mut fixture = Fixture::start(&["acme", "globex"]).await;
    let token = fixture.app.admin_token().await;

    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::POST,
            "/v1/tenants/acme/backups",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "running");
    assert_eq!(body["trigger"], "manual");
    let items = wait_for_backups(&fixture, &token, "acme", 1).await;
    assert_eq!(items[0]["id"], body["id"]);
    assert_eq!(items[0]["status"], "complete");
    assert!(items[0].get("upload_id").is_none());
    assert!(items[0].get("error").is_none(), "no internal error text");

    // The tenant's detail names its last backup and sums up its usage (SPEC §5).
    let (status, detail) = fixture
        .app
        .call(reqwest::Method::GET, "/v1/tenants/acme", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["slug"], "acme");
    assert_eq!(detail["last_backup"]["id"], items[0]["id"], "{detail}");
    assert_eq!(detail["last_backup"]["trigger"], "manual");
    assert_eq!(detail["last_backup"]["bytes"], items[0]["bytes"]);
    assert!(detail["usage"]["requests_last_24h"].is_i64(), "{detail}");
    assert!(
        detail["usage"]["storage_limit_bytes"].as_i64() > Some(0),
        "{detail}"
    );
    assert!(detail.get("failure_reason").is_none(), "{detail}");
    let (_, globex) = fixture
        .app
        .call(
            reqwest::Method::GET,
            "/v1/tenants/globex",
            Some(&token),
            None,
        )
        .await;
    assert!(globex["last_backup"].is_null(), "{globex}");

    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::POST,
            "/v1/tenants/nobody/backups",
            Some(&token),
            None,
        )
        .await;
    tenancy_tests::assert_problem(status, &body, 404, "tenant_not_found");
    let (status, body) = fixture
        .app
        .call(reqwest::Method::GET, "/v1/tenants/acme/backups", None, None)
        .await;
    tenancy_tests::assert_problem(status, &body, 401, "missing_token");

    // On schedule (standard plan: every 24 hours): globex has no backup yet, acme has a
    // fresh one.
    let env = Fixture::control_plane_env(fixture.s3_port, "true");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fixture.app.restart(&env).await;
    let token = fixture.app.admin_token().await;
    let items = wait_for_backups(&fixture, &token, "globex", 1).await;
    assert_eq!(items[0]["trigger"], "scheduled");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        backups_of(&fixture, &token, "globex").await.len(),
        1,
        "once per interval"
    );
    assert_eq!(backups_of(&fixture, &token, "acme").await.len(), 1);

    // Deleting a tenant takes a final backup before its database is dropped.
    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::DELETE,
            "/v1/tenants/globex",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "deleted");
    let listed = json_of(&fixture.backup(&["list", "--tenant", "globex"]));
    let triggers: Vec<&str> = listed
        .as_array()
        .expect("backups")
        .iter()
        .map(|backup| backup["trigger"].as_str().expect("trigger"))
        .collect();
    assert_eq!(triggers, ["final", "scheduled"], "newest first");
    let final_id = listed[0]["id"].as_str().expect("id");
    json_of(&fixture.backup(&["verify", final_id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restores_into_a_new_tenant_even_after_its_own_is_deleted() {
    let fixture = Fixture::start(&["acme"]).await;
    let (_, mut database) = fixture.tenant_database("acme").await;
    sqlx::raw_sql(SEED)
        .execute(&mut database)
        .await
        .expect("seed every table");
    let original = checksums(&mut database).await;
    drop(database);
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();

    let copy = json_of(&fixture.backup(&["restore", &id, "--as", "acme-copy"]));
    assert_eq!(copy["tenant"], "acme-copy");
    let (_, mut database) = fixture.tenant_database("acme-copy").await;
    assert_eq!(checksums(&mut database).await, original);
    drop(database);
    let (_, mut database) = fixture.tenant_database("acme").await;
    assert_eq!(
        checksums(&mut database).await,
        original,
        "the source is untouched"
    );
    drop(database);

    // The copy is a tenant like any other: its own role serves it through the router.
    let admin = fixture.app.admin_token().await;
    let router = fixture.app.start_router(&[]).await;
    let token = fixture
        .app
        .tenant_token(&admin, "acme-copy", &["customers.read"])
        .await;
    let (status, body) = router
        .call(
            reqwest::Method::GET,
            "/v1/customers?limit=5",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().expect("items").len(), 5);

    // A deleted tenant's final backup brings it back under a new slug.
    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::DELETE,
            "/v1/tenants/acme",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = json_of(&fixture.backup(&["list", "--tenant", "acme"]));
    assert_eq!(listed[0]["trigger"], "final");
    let final_id = listed[0]["id"].as_str().expect("id");
    json_of(&fixture.backup(&["restore", final_id, "--as", "acme-again"]));
    let (_, mut database) = fixture.tenant_database("acme-again").await;
    assert_eq!(checksums(&mut database).await, original);

    // A slug in use is refused, and nothing is created.
    let output = fixture.backup(&["restore", &id, "--as", "acme-copy"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("acme-copy"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_of_a_restore_whose_process_died_is_reclaimed() {
    let fixture = Fixture::start(&["acme"]).await;
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let backup = &created[0];
    let tenant_id = backup["tenant_id"].as_str().expect("tenant_id").to_owned();
    // What a restore killed after creating its database leaves: a running row and the
    // database, with nobody holding the tenant's lock.
    let leftover = format!("t_{}_deadbeef", tenant_id.replace('-', ""));
    let mut admin = connect(&fixture.app.postgres.url("postgres")).await;
    sqlx::query(&format!("CREATE DATABASE {leftover}"))
        .execute(&mut admin)
        .await
        .expect("create the leftover database");
    // Made by this installation: it carries its ownership mark.
    let installation = fixture.app.installation_id().await;
    sqlx::query(&format!(
        "COMMENT ON DATABASE {leftover} IS 'tenancy-owned installation={installation} created={}'",
        chrono::Utc::now().timestamp()
    ))
    .execute(&mut admin)
    .await
    .expect("mark the leftover database");
    let mut catalog = connect(&fixture.app.database_url).await;
    sqlx::query(
        "INSERT INTO restores (id, backup_id, tenant_id, server_id, database_name, requested_by) \
         VALUES (gen_random_uuid(), $1::uuid, $2::uuid, $3::uuid, $4, 'a killed tenantctl')",
    )
    .bind(backup["id"].as_str().expect("id"))
    .bind(&tenant_id)
    .bind(backup["server_id"].as_str().expect("server_id"))
    .bind(&leftover)
    .execute(&mut catalog)
    .await
    .expect("record the dead restore");

    // The control plane's sweep (every 300 ms in tests) drops it and closes the row.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = database_names(&fixture.app, &tenant_id).await;
        let status: String =
            sqlx::query_scalar("SELECT status FROM restores WHERE database_name = $1")
                .bind(&leftover)
                .fetch_one(&mut catalog)
                .await
                .expect("read the restore");
        if !names.contains(&leftover) && status == "failed" {
            assert_eq!(names.len(), 1, "the tenant's own database stays: {names:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leftover database is still there ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The tenant is still served from its database.
    let (_, mut database) = fixture.tenant_database("acme").await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM app.users")
        .fetch_one(&mut database)
        .await
        .expect("read the tenant's database");
    assert_eq!(users, 1);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_under_continuous_writes_acknowledges_none_on_the_replaced_database() {
    let fixture = Fixture::start(&["acme"]).await;
    let created = json_of(&fixture.backup(&["create", "--tenant", "acme"]));
    let id = created[0]["id"].as_str().expect("id").to_owned();
    let admin = fixture.app.admin_token().await;
    let router = fixture.app.start_router(&[]).await;
    let token = fixture
        .app
        .tenant_token(&admin, "acme", &["customers.read", "customers.write"])
        .await;

    // A client writing one customer after the other, logging every answer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let url = format!("{}/v1/customers", router.base_url);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut log: Vec<Write> = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 20_000 {
                n += 1;
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "code": format!("W-{n:05}"), "name": "written" }))
                    .send()
                    .await
                    .expect("the router answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                log.push((
                    n,
                    status,
                    body["code"].as_str().unwrap_or_default().to_owned(),
                ));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            log
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restored = json_of(&fixture.backup(&["restore", &id, "--tenant", "acme"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let log = writer.await.expect("the writer");

    let failures: Vec<&Write> = log
        .iter()
        .filter(|(_, status, code)| {
            !(*status == 201 || (*status == 503 && code == "tenant_restoring"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "only 201 and 503 tenant_restoring: {failures:?}"
    );
    assert!(
        log.iter().any(|(_, status, _)| *status == 503),
        "the restore was seen as 503 tenant_restoring"
    );
    let acknowledged: Vec<String> = log
        .iter()
        .filter(|(_, status, _)| *status == 201)
        .map(|(n, _, _)| format!("W-{n:05}"))
        .collect();

    let new = written(
        &fixture
            .app
            .postgres
            .url(restored["database"].as_str().expect("db")),
    )
    .await;
    let kept = written(
        &fixture
            .app
            .postgres
            .url(restored["kept_database"].as_str().expect("kept")),
    )
    .await;
    // The acknowledged writes split at the switch: those before it are in the replaced
    // database only (the restore went back to the backup), those after it in the new one
    // only. Nothing acknowledged is lost to a database that was being replaced.
    let first_new = acknowledged
        .iter()
        .position(|code| new.contains(code))
        .expect("writes were acknowledged after the switch");
    let (before, after) = acknowledged.split_at(first_new);
    assert!(
        !before.is_empty(),
        "writes were acknowledged before the restore"
    );
    assert!(
        before
            .iter()
            .all(|code| kept.contains(code) && !new.contains(code)),
        "writes before the restore are in the replaced database"
    );
    assert!(
        after
            .iter()
            .all(|code| new.contains(code) && !kept.contains(code)),
        "every write acknowledged after the switch is in the new database, none in the old"
    );
    assert_eq!(
        new.len(),
        after.len(),
        "nothing unacknowledged in the new database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_control_planes_on_one_catalog_back_up_and_suspend_each_tenant_once() {
    let mut fixture = Fixture::start(&["acme", "globex", "initech"]).await;
    let env = Fixture::control_plane_env(fixture.s3_port, "true");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fixture.app.restart(&env).await;
    let (_replica, _) = fixture.app.start_replica(&env).await;
    let token = fixture.app.admin_token().await;
    for slug in ["acme", "globex", "initech"] {
        wait_for_backups(&fixture, &token, slug, 1).await;
    }
    // Every trial ends now.
    let mut catalog = connect(&fixture.app.database_url).await;
    sqlx::query("UPDATE tenants SET plan = 'trial', trial_ends_at = now() - interval '1 minute'")
        .execute(&mut catalog)
        .await
        .expect("end the trials");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let active: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tenants WHERE status = 'active'")
                .fetch_one(&mut catalog)
                .await
                .expect("count");
        if active == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the trials were not suspended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several more rounds of both control planes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let backups: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM backups WHERE trigger = 'scheduled' GROUP BY tenant_id",
    )
    .fetch_all(&mut catalog)
    .await
    .expect("count backups");
    assert_eq!(backups, vec![1, 1, 1], "each tenant backed up once");
    let suspensions: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'tenant.suspend' GROUP BY entity_id",
    )
    .fetch_all(&mut catalog)
    .await
    .expect("count suspensions");
    assert_eq!(suspensions, vec![1, 1, 1], "each trial suspended once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_waits_for_a_backup_in_flight() {
    let mut fixture = Fixture::start(&["acme"]).await;
    let token = fixture.app.admin_token().await;
    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::POST,
            "/v1/tenants/acme/backups",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // SIGTERM at once: the answer was given, the backup is still running.
    fixture.app.process.signal(Signal::SIGTERM);
    let code = fixture.app.process.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(0), "a clean exit");
    let mut catalog = connect(&fixture.app.database_url).await;
    let (status, bytes): (String, Option<i64>) =
        sqlx::query_as("SELECT status, bytes FROM backups WHERE id = $1::uuid")
            .bind(body["id"].as_str().expect("id"))
            .fetch_one(&mut catalog)
            .await
            .expect("the backup row");
    assert_eq!(
        status, "complete",
        "the backup finished before the process exited"
    );
    assert!(bytes.is_some_and(|bytes| bytes > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_tenant_whose_final_backup_fails_keeps_its_database() {
    let mut fixture = Fixture::start(&["acme"]).await;
    let token = fixture.app.admin_token().await;
    let (database, _) = fixture.tenant_database("acme").await;
    // The store goes away: no final backup can complete.
    fixture.s3.take().expect("the S3 endpoint").stop().await;
    let (status, body) = fixture
        .app
        .call(
            reqwest::Method::DELETE,
            "/v1/tenants/acme",
            Some(&token),
            None,
        )
        .await;
    tenancy_tests::assert_problem(status, &body, 503, "final_backup_failed");
    // The jobs retry (every 300 ms) and fail the same way: nothing is dropped.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut admin = connect(&fixture.app.postgres.url("postgres")).await;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .expect("look for the database");
    assert!(
        exists,
        "the tenant's database is kept without a final backup"
    );
    let mut catalog = connect(&fixture.app.database_url).await;
    let status: String = sqlx::query_scalar("SELECT status FROM tenants WHERE slug = 'acme'")
        .fetch_one(&mut catalog)
        .await
        .expect("the tenant");
    assert_eq!(status, "deleting");
}
