//! Test clusters: copied from a template cluster made once per machine, in memory when
//! the machine has `/dev/shm`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tenancy_infra::{EmbeddedPostgres, PostgresOptions};

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
        Self::start_with(
            PostgresOptions::for_tests(PathBuf::new()).max_connections,
            &[],
        )
    }

    /// As [`TestPostgres::start`], with room for `max_connections` (benchmarks that hold
    /// a connection per tenant) and further server settings (`-c name=value`).
    pub fn start_with(max_connections: u32, settings: &[(&str, &str)]) -> Self {
        let dir = temp_dir();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(cluster_template().join("data"))
            .arg(dir.path().join("data"))
            .status()
            .expect("run cp");
        assert!(copied.success(), "copy the template cluster");
        Self::start_in(dir, max_connections, settings)
    }

    /// A cluster of its own (`initdb`): another `system_identifier` than every other.
    pub fn start_distinct() -> Self {
        Self::start_distinct_with(
            PostgresOptions::for_tests(PathBuf::new()).max_connections,
            &[],
        )
    }

    /// As [`TestPostgres::start_distinct`], sized and set as [`TestPostgres::start_with`].
    pub fn start_distinct_with(max_connections: u32, settings: &[(&str, &str)]) -> Self {
        Self::start_in(temp_dir(), max_connections, settings)
    }

    /// Starts the cluster in `dir` (initialised there first unless it holds one).
    fn start_in(dir: tempfile::TempDir, max_connections: u32, settings: &[(&str, &str)]) -> Self {
        let options = PostgresOptions {
            max_connections,
            settings: owned(settings),
            ..PostgresOptions::for_tests(dir.path().join("data"))
        };
        let server =
            EmbeddedPostgres::start(options).expect("start an embedded PostgreSQL cluster");
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

fn owned(settings: &[(&str, &str)]) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}
