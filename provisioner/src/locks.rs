//! Session advisory locks on the catalog, each on a connection of its own that is never
//! returned to the pool: if the holder dies, the connection closes and the lock goes with
//! it, so a lock that is free tells another process the holder is gone.

use sqlx::{Connection, PgConnection, PgPool};

pub struct SessionLock(PgConnection);

impl SessionLock {
    /// Takes the lock, waiting for it.
    pub async fn take(pool: &PgPool, key: i64) -> Result<Self, sqlx::Error> {
        let mut connection = pool.acquire().await?.detach();
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut connection)
            .await?;
        Ok(Self(connection))
    }

    /// Takes the lock if nobody holds it.
    pub async fn try_take(pool: &PgPool, key: i64) -> Result<Option<Self>, sqlx::Error> {
        let mut connection = pool.acquire().await?.detach();
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
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
