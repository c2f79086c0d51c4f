//! This installation's identity: the id written in the ownership mark of every object the
//! platform creates on a server.

use sqlx::PgExecutor;
use uuid::Uuid;

/// The installation id (made by the catalog migration, once).
pub async fn id(executor: impl PgExecutor<'_>) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM installation")
        .fetch_one(executor)
        .await
}
