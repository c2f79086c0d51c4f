//! What a router needs to know about a tenant to serve it, in one read.

use sqlx::PgPool;
use tenancy_core::{ServerId, TenantId};

/// The channel on which the catalog announces changes (`tenant:<id>`, `plan:<name>`,
/// `server:<id>`).
pub const CHANNEL: &str = "tenancy_directory";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entry {
    pub id: TenantId,
    pub slug: String,
    pub status: crate::tenants::Status,
    pub plan: String,
    pub server_id: Option<ServerId>,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub connection_budget: Option<i32>,
    pub database_name: Option<String>,
    pub app_role: Option<String>,
    /// Sealed; context [`crate::tenants::password_context`].
    pub app_password: Option<Vec<u8>>,
    pub max_users: i32,
    pub max_connections: i32,
    pub statement_timeout_ms: i32,
    pub requests_per_minute: i32,
    pub storage_exceeded: bool,
    /// A fleet migration run is migrating the tenant's database.
    pub migrating: bool,
}

/// The tenant with this id, whatever its status.
pub async fn lookup(pool: &PgPool, id: TenantId) -> Result<Option<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.slug, t.status, t.plan, t.server_id, s.host, s.port, s.connection_budget, \
           t.database_name, t.app_role, t.app_password, p.max_users, p.max_connections, p.statement_timeout_ms, \
           p.requests_per_minute, t.storage_exceeded, t.migrating_run IS NOT NULL AS migrating \
         FROM tenants t JOIN plans p ON p.name = t.plan \
         LEFT JOIN database_servers s ON s.id = t.server_id \
         WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The id of the tenant with this slug, unless it is deleted (a slug may be taken again
/// after a deletion).
pub async fn id_for_slug(pool: &PgPool, slug: &str) -> Result<Option<TenantId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1 AND status <> 'deleted'")
        .bind(slug)
        .fetch_optional(pool)
        .await
}
