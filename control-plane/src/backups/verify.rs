//! `backup verify`: re-read the stored object, check its size and SHA-256 against the
//! catalog, and have `pg_restore --list` read its table of contents.

use std::process::Stdio;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::{BackupError, hex, store, tools};
use crate::state::Platform;

#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub id: Uuid,
    pub bytes: i64,
    pub sha256: String,
    /// Entries in the archive's table of contents.
    pub entries: usize,
}

/// Streams the object once: every byte is hashed and counted, and fed to
/// `pg_restore --list` (which stops reading after the table of contents).
pub async fn verify(platform: &Platform, id: Uuid) -> Result<Verified, BackupError> {
    let store = store(platform)?;
    let backup = catalog::backups::get(&platform.db, id)
        .await?
        .filter(|backup| backup.status == "complete")
        .ok_or(BackupError::UnknownBackup(id))?;
    let mut body = store.get(&backup.object_key).await?;
    let mut child = tokio::process::Command::new(tools::program("pg_restore"))
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BackupError::Io {
            action: "start pg_restore",
            source,
        })?;
    let mut stdin = child.stdin.take();
    let mut hasher = Sha256::new();
    let mut bytes: i64 = 0;
    while let Some(chunk) = body.try_next().await.map_err(|error| BackupError::Io {
        action: "read the stored object",
        source: std::io::Error::other(error),
    })? {
        hasher.update(&chunk);
        bytes += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
        if let Some(pipe) = stdin.as_mut()
            && pipe.write_all(&chunk).await.is_err()
        {
            // pg_restore has read what it needs (or failed; its status says which).
            stdin = None;
        }
    }
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|source| BackupError::Io {
            action: "wait for pg_restore",
            source,
        })?;
    let sha256 = hasher.finalize().to_vec();
    let expected = backup.sha256.clone().unwrap_or_default();
    if sha256 != expected || Some(bytes) != backup.bytes {
        return Err(BackupError::Corrupt {
            expected_bytes: backup.bytes.unwrap_or_default(),
            expected_sha256: hex(&expected),
            bytes,
            sha256: hex(&sha256),
        });
    }
    if !output.status.success() {
        return Err(BackupError::List {
            status: output.status.to_string(),
            stderr: tools::tail(&output.stderr),
        });
    }
    let entries = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with(';') && !line.trim().is_empty())
        .count();
    Ok(Verified {
        id,
        bytes,
        sha256: hex(&sha256),
        entries,
    })
}
