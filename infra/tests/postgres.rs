//! The embedded PostgreSQL launcher against the machine's real server binaries.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tenancy_infra::{EmbeddedPostgres, PostgresOptions};

fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    // The server runs as the `postgres` user when the tests run as root; let it in.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

async fn query_one(url: &str, sql: &str) -> String {
    let mut connection = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(&mut connection)
        .await
        .expect("query")
}

/// The uid a process runs as, from /proc.
fn process_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .expect("Uid line");
    line.split_whitespace()
        .nth(1)
        .expect("real uid")
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn two_clusters_run_side_by_side_as_an_unprivileged_user() {
    let (first_dir, second_dir) = (temp_dir(), temp_dir());
    let first = EmbeddedPostgres::start(PostgresOptions::for_tests(first_dir.path().join("data")))
        .expect("start the first cluster");
    let second =
        EmbeddedPostgres::start(PostgresOptions::for_tests(second_dir.path().join("data")))
            .expect("start the second cluster");
    assert_ne!(
        first.port(),
        second.port(),
        "each cluster gets its own free port"
    );

    let first_dir_seen = query_one(&first.superuser_url("postgres"), "SHOW data_directory").await;
    let second_dir_seen = query_one(&second.superuser_url("postgres"), "SHOW data_directory").await;
    assert_eq!(first_dir_seen, first.data_dir().display().to_string());
    assert_eq!(second_dir_seen, second.data_dir().display().to_string());

    // Never root: PostgreSQL refuses it, so the launcher runs it as `postgres`.
    for server in [&first, &second] {
        let uid = process_uid(server.pid().expect("running"));
        assert_ne!(uid, 0, "the server must not run as root");
        if nix::unistd::Uid::effective().is_root() {
            let postgres = nix::unistd::User::from_name("postgres")
                .expect("lookup")
                .expect("user");
            assert_eq!(uid, postgres.uid.as_raw());
        }
    }

    // Password authentication is on: a wrong password is refused.
    let wrong = format!(
        "postgres://postgres:wrong@127.0.0.1:{}/postgres",
        first.port()
    );
    assert!(PgConnection::connect(&wrong).await.is_err());
}

#[tokio::test]
async fn a_second_start_reuses_the_data_directory() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut server = EmbeddedPostgres::start(PostgresOptions::for_tests(&data)).expect("start");
    let url = server.superuser_url("postgres");
    let mut connection = PgConnection::connect(&url).await.expect("connect");
    sqlx::query("CREATE TABLE kept (value text)")
        .execute(&mut connection)
        .await
        .expect("create");
    sqlx::query("INSERT INTO kept VALUES ('still here')")
        .execute(&mut connection)
        .await
        .expect("insert");
    connection.close().await.expect("close");
    let password = server.superuser_password().to_owned();
    let pid = server.pid().expect("running");
    server.stop().expect("stop");
    assert!(!server.is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the server process is gone"
    );

    let again = EmbeddedPostgres::start(PostgresOptions::for_tests(&data)).expect("restart");
    assert_eq!(
        again.superuser_password(),
        password,
        "the same cluster, the same password"
    );
    let value = query_one(&again.superuser_url("postgres"), "SELECT value FROM kept").await;
    assert_eq!(value, "still here");
}

#[tokio::test]
async fn a_server_left_running_by_a_dead_owner_is_replaced() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let orphan = EmbeddedPostgres::start(PostgresOptions::for_tests(&data)).expect("start");
    let orphan_pid = orphan.pid().expect("running");
    // Simulate an owner killed with SIGKILL: the handle is forgotten, the server lives on.
    std::mem::forget(orphan);

    let server = EmbeddedPostgres::start(PostgresOptions::for_tests(&data)).expect("start again");
    assert_ne!(server.pid(), Some(orphan_pid));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{orphan_pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{orphan_pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the old server was not stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = query_one(&server.superuser_url("postgres"), "SELECT 'up'").await;
    assert_eq!(answer, "up");
}

#[test]
fn a_missing_server_binary_directory_is_reported_with_what_to_install() {
    let error =
        tenancy_infra::postgres::PgBinaries::locate_in(&[std::path::PathBuf::from("/nonexistent")])
            .expect_err("nothing there");
    let message = error.to_string();
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("TENANCY_PG_BIN_DIR"), "{message}");
}
