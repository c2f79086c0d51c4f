//! `backup verify`: re-read the stored object, check its size and SHA-256 against the
//! catalog, and have `pg_restore --list` read its table of contents. The same streaming
//! check guards a restore.

use std::process::Output;

use catalog::backups::Backup;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tenancy_core::BackupId;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{BackupError, Store, hex, store, tools};
use crate::platform::Platform;

#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub id: BackupId,
    pub bytes: i64,
    pub sha256: String,
    /// Entries in the archive's table of contents.
    pub entries: usize,
}

/// A complete backup by id.
pub(super) async fn complete_backup(
    platform: &Platform,
    id: BackupId,
) -> Result<Backup, BackupError> {
    catalog::backups::get(&platform.db, id)
        .await?
        .filter(|backup| backup.status == catalog::backups::BackupStatus::Complete)
        .ok_or(BackupError::UnknownBackup(id))
}

/// Streams the stored object once, hashing and counting every byte and writing it to
/// `sink` while the sink takes it (`pg_restore --list` stops reading after the table of
/// contents; a sink that fails is let go, its own exit status tells why). Fails when the
/// object differs from what the catalog recorded.
pub(super) async fn stream_checked(
    store: &Store,
    backup: &Backup,
    mut sink: Option<impl AsyncWrite + Unpin>,
) -> Result<(), BackupError> {
    let mut body = store.get(&backup.object_key).await?;
    let mut hasher = Sha256::new();
    let mut bytes: i64 = 0;
    while let Some(chunk) = body.try_next().await.map_err(|error| BackupError::Io {
        action: "read the stored object",
        source: std::io::Error::other(error),
    })? {
        hasher.update(&chunk);
        bytes += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
        if let Some(pipe) = sink.as_mut()
            && pipe.write_all(&chunk).await.is_err()
        {
            sink = None;
        }
    }
    if let Some(mut pipe) = sink {
        let _ = pipe.shutdown().await;
    }
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
    Ok(())
}

/// Runs `pg_restore` (as `command` says) on the stored object, streamed and checked on the
/// way; its output once both are done. A mismatch is reported before pg_restore's status.
pub(super) async fn into_pg_restore(
    store: &Store,
    backup: &Backup,
    command: &mut tokio::process::Command,
) -> Result<Output, BackupError> {
    let mut child = tools::spawn(command, "start pg_restore")?;
    let checked = stream_checked(store, backup, child.stdin.take()).await;
    let output = child
        .wait_with_output()
        .await
        .map_err(|source| BackupError::Io {
            action: "wait for pg_restore",
            source,
        })?;
    checked?;
    Ok(output)
}

pub async fn verify(platform: &Platform, id: BackupId) -> Result<Verified, BackupError> {
    let store = store(platform)?;
    let backup = complete_backup(platform, id).await?;
    let mut command = tools::command("pg_restore");
    command.arg("--list");
    let output = into_pg_restore(store, &backup, &mut command).await?;
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
        bytes: backup.bytes.unwrap_or_default(),
        sha256: hex(&backup.sha256.unwrap_or_default()),
        entries,
    })
}
