//! `backup create`: `pg_dump --format=custom` as a short-lived read-only role, its output
//! cut into parts and streamed into an S3 multipart upload (no temporary file; at most two
//! parts in memory: one filling, one uploading), hashed and counted on the way.

use std::process::Stdio;

use aws_sdk_s3::types::CompletedPart;
use bytes::BytesMut;
use catalog::backups::{Backup, BackupStatus, NewBackup};
use catalog::tenants::Status;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tenancy_core::{BackupId, ServerId};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::{BackupError, Store, StoreError, store, tools};
use crate::locks::{LockKey, SessionLock};
use crate::platform::Platform;

pub use catalog::backups::Trigger;

/// The first parts are 8 MiB; every 1,000 parts the size doubles, so S3's 10,000-part
/// limit holds for any object S3 accepts (up to 5 TiB) without knowing the size ahead.
const BASE_PART: usize = 8 << 20;
const MAX_PART: usize = 5 << 30;

fn part_size(number: i32) -> usize {
    let doublings = u32::try_from((number - 1) / 1000).unwrap_or(0).min(10);
    (BASE_PART << doublings).min(MAX_PART)
}

/// Backs a tenant up. The catalog row is `complete` only after the upload is completed and
/// the stored size matches what was streamed; any failure aborts the upload and leaves the
/// row `failed` (listed nowhere).
pub async fn create(
    platform: &Platform,
    slug: &str,
    trigger: Trigger,
    requested_by: &str,
) -> Result<Backup, BackupError> {
    begin(platform, slug, trigger, requested_by)
        .await?
        .run()
        .await
}

/// A backup recorded (`running`) and ready to run: the control plane answers with it and
/// runs it in the background.
pub struct Pending {
    platform: Platform,
    row: Backup,
    lock: SessionLock,
}

impl Pending {
    pub fn row(&self) -> &Backup {
        &self.row
    }

    pub async fn run(self) -> Result<Backup, BackupError> {
        let Pending {
            platform,
            row,
            lock,
        } = self;
        let store = store(&platform)?;
        let id = row.id;
        let result = match dump_and_upload(
            &platform,
            store,
            row.server_id,
            &row.database_name,
            &row.object_key,
            id,
        )
        .await
        {
            Ok((bytes, sha256)) => {
                tracing::info!(backup = %id, tenant_id = %row.tenant_id, bytes, "backup complete");
                catalog::backups::complete(&platform.db, id, bytes, &sha256)
                    .await
                    .map_err(BackupError::from)
            }
            Err(error) => {
                tracing::warn!(backup = %id, tenant_id = %row.tenant_id, %error, "backup failed");
                catalog::backups::fail(&platform.db, id, &error.to_string()).await?;
                Err(error)
            }
        };
        lock.release().await;
        result?;
        catalog::backups::get(&platform.db, id)
            .await?
            .ok_or(BackupError::UnknownBackup(id))
    }
}

/// Checks the tenant and records the attempt.
pub async fn begin(
    platform: &Platform,
    slug: &str,
    trigger: Trigger,
    requested_by: &str,
) -> Result<Pending, BackupError> {
    let store = store(platform)?;
    let tenant = catalog::tenants::find_by_slug(&platform.db, slug)
        .await?
        .filter(|tenant| tenant.status != Status::Deleted)
        .ok_or_else(|| BackupError::UnknownTenant(slug.to_owned()))?;
    let allowed = match tenant.status {
        Status::Active | Status::Suspended => true,
        Status::Deleting => trigger == Trigger::Final,
        _ => false,
    };
    let (true, Some(server_id), Some(database)) =
        (allowed, tenant.server_id, tenant.database_name.clone())
    else {
        return Err(BackupError::NotBackedUp {
            slug: tenant.slug,
            status: tenant.status,
        });
    };
    let id = BackupId::new();
    let key = format!(
        "tenants/{}/{}-{id}.dump",
        tenant.id,
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    abort_abandoned(platform).await;
    // Held while this process works on the backup: another process finding the row
    // `running` with the lock free knows this one died.
    let lock = SessionLock::take(&platform.db, LockKey::Backup(id)).await?;
    catalog::backups::start(
        &platform.db,
        &NewBackup {
            id,
            tenant_id: tenant.id,
            server_id,
            database_name: &database,
            schema_version: tenant.schema_version,
            bucket: store.bucket(),
            object_key: &key,
            trigger,
            requested_by,
        },
    )
    .await?;
    tracing::info!(backup = %id, tenant_id = %tenant.id, "backup started");
    let row = catalog::backups::get(&platform.db, id)
        .await?
        .ok_or(BackupError::UnknownBackup(id))?;
    Ok(Pending {
        platform: platform.clone(),
        row,
        lock,
    })
}

async fn dump_and_upload(
    platform: &Platform,
    store: &Store,
    server_id: ServerId,
    database: &str,
    key: &str,
    id: BackupId,
) -> Result<(i64, Vec<u8>), BackupError> {
    let address = crate::servers::address(platform, server_id).await?;
    let name = crate::DatabaseName::parse(database).ok_or_else(|| {
        BackupError::Api(crate::error::OpsError::Internal(anyhow::anyhow!(
            "the catalog names an unexpected database {database}"
        )))
    })?;
    let admin = address.connect("postgres").await?;
    let reader = crate::backup::create_reader(&admin, &name).await?;
    let result = async {
        let mut command = tools::command("pg_dump");
        command
            .arg("--format=custom")
            .arg("--no-password")
            .arg("--host")
            .arg(&address.host)
            .arg("--port")
            .arg(address.port.to_string())
            .arg("--username")
            .arg(&reader.name)
            .arg("--dbname")
            .arg(database)
            .env("PGPASSWORD", reader.password.expose_secret())
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        let mut child = tools::spawn(&mut command, "start pg_dump")?;
        let stderr = tokio::spawn(read_all(child.stderr.take()));
        let stdout = child.stdout.take().ok_or(BackupError::Io {
            action: "read pg_dump's output",
            source: std::io::Error::other("no stdout"),
        })?;
        let upload_id = store.start_upload(key).await?;
        catalog::backups::set_upload_id(&platform.db, id, Some(&upload_id)).await?;
        let streamed = stream(store, key, &upload_id, stdout).await;
        let finished = match streamed {
            Ok(streamed) => {
                let status = child.wait().await.map_err(|source| BackupError::Io {
                    action: "wait for pg_dump",
                    source,
                })?;
                if status.success() {
                    Ok(streamed)
                } else {
                    Err(BackupError::Dump {
                        status: status.to_string(),
                        stderr: tools::tail(&stderr.await.unwrap_or_default()),
                    })
                }
            }
            Err(error) => {
                let _ = child.kill().await;
                Err(error)
            }
        };
        let outcome = match finished {
            Ok((parts, bytes, sha256)) => complete(store, key, &upload_id, parts, bytes)
                .await
                .map(|()| (bytes, sha256)),
            Err(error) => Err(error),
        };
        if outcome.is_err() {
            // Nothing half-done: the parts go; if the store cannot be reached now, the
            // upload id stays in the row and a later run aborts it.
            match store.abort_upload(key, &upload_id).await {
                Ok(()) => catalog::backups::set_upload_id(&platform.db, id, None).await?,
                Err(abort) => {
                    tracing::warn!(backup = %id, error = %abort, "abort the upload; a later run retries")
                }
            }
        }
        outcome
    }
    .await;
    if let Err(error) = crate::backup::drop_reader(&admin, &reader).await {
        tracing::warn!(backup = %id, %error, "drop the backup reader role; it expires within the hour");
    }
    result
}

async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_end(&mut bytes).await;
    }
    bytes
}

type Streamed = (Vec<CompletedPart>, i64, Vec<u8>);

/// Reads `input` to its end in parts, uploading each while the next fills.
async fn stream(
    store: &Store,
    key: &str,
    upload_id: &str,
    mut input: impl AsyncRead + Unpin,
) -> Result<Streamed, BackupError> {
    let mut hasher = Sha256::new();
    let mut bytes: i64 = 0;
    let mut parts = Vec::new();
    let mut in_flight: Option<JoinHandle<Result<CompletedPart, StoreError>>> = None;
    let mut number = 1;
    loop {
        let size = part_size(number);
        let mut buffer = BytesMut::with_capacity(size);
        while buffer.len() < size {
            let read = input
                .read_buf(&mut buffer)
                .await
                .map_err(|source| BackupError::Io {
                    action: "read pg_dump's output",
                    source,
                })?;
            if read == 0 {
                break;
            }
        }
        let last = buffer.len() < size;
        if buffer.is_empty() && number > 1 {
            break;
        }
        hasher.update(&buffer);
        bytes += i64::try_from(buffer.len()).unwrap_or(i64::MAX);
        if let Some(previous) = in_flight.take() {
            parts.push(joined(previous).await?);
        }
        let (store, key, upload_id) = (store.clone(), key.to_owned(), upload_id.to_owned());
        let body = buffer.freeze();
        in_flight = Some(tokio::spawn(async move {
            store.upload_part(&key, &upload_id, number, body).await
        }));
        number += 1;
        if last {
            break;
        }
    }
    if let Some(previous) = in_flight.take() {
        parts.push(joined(previous).await?);
    }
    Ok((parts, bytes, hasher.finalize().to_vec()))
}

async fn joined(
    handle: JoinHandle<Result<CompletedPart, StoreError>>,
) -> Result<CompletedPart, BackupError> {
    handle
        .await
        .map_err(|error| BackupError::Io {
            action: "upload a part",
            source: std::io::Error::other(error),
        })?
        .map_err(BackupError::from)
}

/// Completes the upload and checks the stored size against what was streamed.
async fn complete(
    store: &Store,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
    bytes: i64,
) -> Result<(), BackupError> {
    store.complete_upload(key, upload_id, parts).await?;
    let stored = store.size(key).await?;
    if stored != bytes {
        let _ = store.delete(key).await;
        return Err(BackupError::Store(StoreError::Request {
            action: "check the stored size",
            message: format!("{stored} bytes stored, {bytes} streamed"),
        }));
    }
    Ok(())
}

/// Aborts the uploads of attempts whose abort could not reach the store, and of attempts
/// whose process died (row `running`, lock free). Best effort: what fails now is retried
/// by the next backup.
pub(crate) async fn abort_abandoned(platform: &Platform) {
    let Ok(store) = store(platform) else {
        return;
    };
    let Ok(candidates) = catalog::backups::with_upload(&platform.db).await else {
        return;
    };
    for backup in candidates {
        let Some(upload_id) = backup.upload_id.as_deref() else {
            continue;
        };
        let mut probe = None;
        if backup.status == BackupStatus::Running {
            let key = LockKey::Backup(backup.id);
            let Ok(Some(lock)) = SessionLock::try_take(&platform.db, key).await else {
                continue; // its process is still at work (or the catalog is away)
            };
            // Read again under the lock: a backup that completed (and let its lock go)
            // since the list was read is not abandoned.
            let still_running = catalog::backups::get(&platform.db, backup.id)
                .await
                .ok()
                .flatten()
                .is_some_and(|now| now.status == BackupStatus::Running && now.upload_id.is_some());
            if !still_running {
                lock.release().await;
                continue;
            }
            probe = Some(lock);
        }
        if store
            .abort_upload(&backup.object_key, upload_id)
            .await
            .is_ok()
        {
            tracing::warn!(backup = %backup.id, "aborted the upload of an abandoned backup");
            let _ = catalog::backups::fail(
                &platform.db,
                backup.id,
                "abandoned; its upload was aborted",
            )
            .await;
            let _ = catalog::backups::set_upload_id(&platform.db, backup.id, None).await;
        }
        if let Some(lock) = probe {
            lock.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_double_every_thousand_so_ten_thousand_reach_five_tebibytes() {
        assert_eq!(part_size(1), 8 << 20);
        assert_eq!(part_size(1000), 8 << 20);
        assert_eq!(part_size(1001), 16 << 20);
        assert_eq!(part_size(2001), 32 << 20);
        assert!(part_size(10_000) <= MAX_PART);
        let total: u64 = (1..=10_000).map(|n| part_size(n) as u64).sum();
        assert!(total >= 5 << 40, "10,000 parts hold {total} bytes");
        assert_eq!(
            part_size(100_000),
            MAX_PART,
            "never beyond S3's largest part"
        );
    }
}
