//! Processes under test: the workspace's binaries, started and stopped; waiting for what
//! they do.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::temp_dir;

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
        } else {
            // As `infra/test.sh` builds them: with the test targets, so that the features
            // resolve as in `cargo test` and nothing is rebuilt.
            args.push("--tests");
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

/// What a check in [`eventually`] gives: `true`, `Some(value)` or `Ok(value)` once it
/// holds; `Err(seen)` says what it saw instead (shown if time runs out).
pub trait Settled {
    type Value;
    fn settled(self) -> Result<Self::Value, Option<String>>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Settled for Option<T> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Settled for Result<T, String> {
    type Value = T;
    fn settled(self) -> Result<T, Option<String>> {
        self.map_err(Some)
    }
}

/// Runs `check` until it holds (`true`, or `Some(value)`/`Ok(value)`, which is returned),
/// polling every 25 ms at first and backing off to every 250 ms; fails the test naming
/// `what` (and the last `Err` seen) once `timeout` has passed. Replaces hand-rolled polling
/// loops and fixed sleeps: a test waits exactly as long as the behaviour takes, and a slow
/// machine only needs the timeout.
///
/// `check` may be an async closure that borrows (`async || query(&mut connection).await`).
pub async fn eventually<S: Settled>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> S,
) -> S::Value {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(25);
    loop {
        let seen = match check().await.settled() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}{}",
            seen.map(|seen| format!("; last seen: {seen}"))
                .unwrap_or_default()
        );
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
