//! The admin audit log: who did what, when, with the entity's state before and after.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tenancy_core::AdminId;

/// Who acted: an admin through the API, or an operator through `tenantctl`.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<AdminId>,
    pub name: String,
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub action: &'a str,
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<uuid::Uuid>,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Records a change; run it in the transaction that makes the change.
pub async fn record(
    executor: impl PgExecutor<'_>,
    actor: &Actor,
    change: Change<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, actor, action, entity_type, entity_id, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(actor.id)
    .bind(&actor.name)
    .bind(change.action)
    .bind(change.entity_type)
    .bind(change.entity_id)
    .bind(change.before)
    .bind(change.after)
    .execute(executor)
    .await?;
    Ok(())
}

/// Newest first; `before` is the cursor (an entry id) to continue after.
pub async fn list(
    pool: &PgPool,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, occurred_at, actor_id, actor, action, entity_type, entity_id, before, after \
         FROM audit_log WHERE ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(before)
    .fetch_all(pool)
    .await
}

/// What the audit log is filtered by; each is optional.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Actions starting with this (`tenant.` for every tenant action).
    pub action: Option<&'a str>,
    /// The actor's name, exactly.
    pub actor: Option<&'a str>,
    /// The entity's type, exactly.
    pub entity_type: Option<&'a str>,
    /// Any of these entity ids (a tenant is recorded under its id or its slug).
    pub entity_ids: Option<&'a [String]>,
}

/// Newest first, filtered; `before` is the cursor (an entry id) to continue after.
pub async fn search(
    pool: &PgPool,
    filter: &Filter<'_>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Entry>, sqlx::Error> {
    let action = tenancy_core::search::prefix(filter.action);
    sqlx::query_as(
        "SELECT id, occurred_at, actor_id, actor, action, entity_type, entity_id, before, after \
         FROM audit_log WHERE ($2::bigint IS NULL OR id < $2) \
           AND ($3::text IS NULL OR action LIKE $3) AND ($4::text IS NULL OR actor = $4) \
           AND ($5::text IS NULL OR entity_type = $5) \
           AND ($6::text[] IS NULL OR entity_id = ANY($6)) \
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(before)
    .bind(action)
    .bind(filter.actor)
    .bind(filter.entity_type)
    .bind(filter.entity_ids)
    .fetch_all(pool)
    .await
}
