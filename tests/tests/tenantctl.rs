//! `tenantctl server` and `tenantctl tenant`, run as an operator would.

use std::process::Output;

use serde_json::Value;
use tenancy_tests::ControlPlane;

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "tenantctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn operators_manage_servers_and_tenants_from_the_cli() {
    let app = ControlPlane::start().await;
    let port = app.postgres.server.port().to_string();
    let password = format!("{}\n", app.postgres.server.superuser_password());
    let added = app.tenantctl(
        &[
            "--json",
            "server",
            "add",
            "--name",
            "main",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--max-tenants",
            "20",
        ],
        &password,
    );
    let server = json_of(&added);
    assert_eq!(server["name"], "main");
    assert!(
        !String::from_utf8_lossy(&added.stdout).contains(app.postgres.server.superuser_password())
    );
    let wrong = app.tenantctl(
        &[
            "server",
            "add",
            "--name",
            "wrong",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ],
        "not-the-password\n",
    );
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("cannot be prepared"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let created = json_of(&app.tenantctl(
        &[
            "--json",
            "tenant",
            "create",
            "--slug",
            "cli-made",
            "--name",
            "CLI Made",
            "--plan",
            "standard",
            "--admin-email",
            "owner@cli.example",
        ],
        "a long enough password\n",
    ));
    assert_eq!(
        (created["status"].as_str(), created["server"].as_str()),
        (Some("active"), Some("main"))
    );

    // The API sees what the CLI made, and the reverse.
    let token = app.admin_token().await;
    let (status, _) = app.create_tenant(&token, "api-made").await;
    assert_eq!(status, 201);
    let listed = json_of(&app.tenantctl(&["--json", "tenant", "list"], ""));
    let slugs: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|tenant| tenant["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["cli-made", "api-made"]);
    let table = app.tenantctl(&["tenant", "list", "--status", "active"], "");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("SLUG") && text.contains("cli-made") && text.contains("api-made"),
        "{text}"
    );

    assert_eq!(
        json_of(&app.tenantctl(&["--json", "tenant", "suspend", "cli-made"], ""))["status"],
        "suspended"
    );
    let again = app.tenantctl(&["tenant", "suspend", "cli-made"], "");
    assert!(
        !again.status.success(),
        "an invalid transition exits non-zero"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot become"));
    assert_eq!(
        json_of(&app.tenantctl(&["--json", "tenant", "resume", "cli-made"], ""))["status"],
        "active"
    );
    assert_eq!(
        json_of(&app.tenantctl(&["--json", "tenant", "show", "cli-made"], ""))["plan"],
        "standard"
    );
    // The same rule as the API: no backups configured, no drop without an explicit waiver.
    let refused = app.tenantctl(&["tenant", "delete", "cli-made"], "");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("final backup"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        json_of(&app.tenantctl(&["--json", "tenant", "show", "cli-made"], ""))["status"],
        "active"
    );
    let deleting = json_of(&app.tenantctl(
        &[
            "--json",
            "tenant",
            "delete",
            "cli-made",
            "--no-final-backup",
        ],
        "",
    ));
    assert_eq!(
        deleting["status"], "deleting",
        "the default grace period keeps the database for now"
    );
    assert!(deleting["delete_after"].is_string());
    assert_eq!(deleting["final_backup_waived"], true);

    let bad = app.tenantctl(
        &[
            "tenant",
            "create",
            "--slug",
            "Bad Slug",
            "--name",
            "x",
            "--admin-email",
            "a@b.example",
        ],
        "a long enough password\n",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("slug"));
    let servers = json_of(&app.tenantctl(&["--json", "server", "list"], ""));
    assert_eq!(
        servers[0]["tenants"], 2,
        "the deleting tenant still holds its slot; the bad one was never made"
    );

    // A server's capacity: changed in place, out-of-range refused with nothing changed.
    let set = json_of(&app.tenantctl(
        &[
            "--json",
            "server",
            "set",
            "main",
            "--connection-budget",
            "77",
            "--max-tenants",
            "30",
        ],
        "",
    ));
    assert_eq!(set["connection_budget"], 77);
    assert_eq!(set["max_tenants"], 30);
    let refused = app.tenantctl(&["server", "set", "main", "--connection-budget", "0"], "");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("connection_budget"));
    let missing = app.tenantctl(&["server", "set", "nope", "--max-tenants", "3"], "");
    assert!(!missing.status.success());
    let servers = json_of(&app.tenantctl(&["--json", "server", "list"], ""));
    assert_eq!(servers[0]["connection_budget"], 77);
}
