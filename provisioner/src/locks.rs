//! Session advisory locks on the catalog, each on a connection of its own that is never
//! returned to the pool: if the holder dies, the connection closes and the lock goes with
//! it, so a lock that is free tells another process the holder is gone.

use sqlx::{Connection, PgConnection, PgPool};
use tenancy_core::{BackupId, TenantId};
use uuid::Uuid;

/// Every catalog advisory lock the platform takes, and the key of each. The namespaces
/// (the constant each id is folded with) keep them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKey {
    /// A tenant's work: provisioning, drop, restore (and the deleting request).
    Tenant(TenantId),
    /// A backup while its process runs (free while `running` = the process died).
    Backup(BackupId),
    /// A whole fleet migration run: one at a time.
    MigrationRun,
    /// One background job's round (its index in [`crate::jobs::JOBS`]).
    Job(usize),
}

impl LockKey {
    pub fn value(self) -> i64 {
        let folded = |id: Uuid, namespace: i64| {
            let bytes: [u8; 8] = id.as_bytes()[..8].try_into().unwrap_or_default();
            i64::from_be_bytes(bytes) ^ namespace
        };
        match self {
            Self::Tenant(id) => folded(id.as_uuid(), 0x7465_6e61_6e74_0000),
            Self::Backup(id) => folded(id.as_uuid(), 0x6261_636b_7570_0000),
            Self::MigrationRun => 0x7465_6e61_6e63_7902,
            Self::Job(index) => 0x6a6f_6273_0000_0000 + i64::try_from(index).unwrap_or(0),
        }
    }
}

pub struct SessionLock(PgConnection);

impl SessionLock {
    /// Takes the lock, waiting for it.
    pub async fn take(pool: &PgPool, key: LockKey) -> Result<Self, sqlx::Error> {
        let mut connection = pool.acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key.value())
            .execute(&mut connection)
            .await?;
        Ok(Self(connection))
    }

    /// Takes the lock if nobody holds it.
    pub async fn try_take(pool: &PgPool, key: LockKey) -> Result<Option<Self>, sqlx::Error> {
        let mut connection = pool.acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key.value())
            .fetch_one(&mut connection)
            .await?;
        if taken {
            Ok(Some(Self(connection)))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    /// Lets the lock go (closing its connection releases it).
    pub async fn release(self) {
        let _ = self.0.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_values_and_namespaces_apart() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0000_0000_0000_0000);
        let (tenant, backup) = (TenantId::from_uuid(id), BackupId::from_uuid(id));
        // The values are what running processes use: they never change.
        assert_eq!(
            LockKey::Tenant(tenant).value(),
            0x0123_4567_89ab_cdef ^ 0x7465_6e61_6e74_0000
        );
        assert_eq!(
            LockKey::Backup(backup).value(),
            0x0123_4567_89ab_cdef ^ 0x6261_636b_7570_0000
        );
        assert_ne!(
            LockKey::Tenant(tenant).value(),
            LockKey::Backup(backup).value()
        );
        assert_ne!(LockKey::Job(0).value(), LockKey::Job(1).value());
        assert_ne!(LockKey::MigrationRun.value(), LockKey::Job(2).value());
    }
}
