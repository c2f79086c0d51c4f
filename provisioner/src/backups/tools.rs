//! The PostgreSQL client programs (`pg_dump`, `pg_restore`): where they are, how they run.

use std::path::PathBuf;
use std::process::Stdio;

use super::BackupError;

/// A client program with its standard streams piped, killed if dropped.
pub fn command(name: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program(name));
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

pub fn spawn(
    command: &mut tokio::process::Command,
    action: &'static str,
) -> Result<tokio::process::Child, BackupError> {
    command
        .spawn()
        .map_err(|source| BackupError::Io { action, source })
}

/// `TENANCY_PG_BIN_DIR` when set, else the newest `/usr/lib/postgresql/*/bin` holding the
/// program, else the program name (looked up on `PATH`). `pg_dump` must be at least as new
/// as the servers it dumps.
fn program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TENANCY_PG_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let path = entry.path().join("bin").join(name);
            path.is_file().then_some((version, path))
        })
        .collect();
    versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions
        .into_iter()
        .next()
        .map_or_else(|| PathBuf::from(name), |(_, path)| path)
}

/// The last lines of a program's standard error, for a message.
pub fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
