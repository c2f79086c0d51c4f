//! Database servers that tenant databases are placed on.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tenancy_core::ServerId;

/// Whether new tenants may be placed on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ServerStatus {
    Active,
    /// Keeps its tenants; takes no new ones.
    Draining,
}

impl std::fmt::Display for ServerStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Active => "active",
            Self::Draining => "draining",
        })
    }
}

/// A server row, never its admin password. Not an API response: the control plane's wire
/// type is made from it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub host: String,
    pub port: i32,
    pub admin_user: String,
    pub max_tenants: i32,
    pub connection_budget: i32,
    pub status: ServerStatus,
    pub schema_version: Option<i64>,
    /// The cluster's identity (`pg_control_system().system_identifier`).
    pub system_identifier: Option<String>,
    /// Live (not deleted) tenants placed on it.
    pub tenants: i64,
    pub created_at: DateTime<Utc>,
}

/// What the provisioner needs to act on a server.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServerSecret {
    pub id: ServerId,
    pub name: String,
    /// The cluster's `system_identifier`, once known.
    pub system_identifier: Option<String>,
    pub host: String,
    pub port: i32,
    pub admin_user: String,
    /// Sealed; context [`password_context`].
    pub admin_password: Vec<u8>,
}

/// The sealing context of a server's admin password.
pub fn password_context(id: ServerId) -> String {
    format!("server:{id}:admin_password")
}

pub struct NewServer<'a> {
    pub id: ServerId,
    pub name: &'a str,
    pub host: &'a str,
    pub port: i32,
    pub admin_user: &'a str,
    pub sealed_password: &'a [u8],
    pub max_tenants: i32,
    pub connection_budget: i32,
    pub schema_version: i64,
    /// The cluster's `system_identifier`: unique (`database_servers_system_identifier_key`).
    pub system_identifier: &'a str,
}

const SELECT: &str = "SELECT s.id, s.name, s.host, s.port, s.admin_user, s.max_tenants, \
    s.connection_budget, s.status, s.schema_version, s.system_identifier, s.created_at, \
    (SELECT count(*) FROM tenants t WHERE t.server_id = s.id AND t.status <> 'deleted') AS tenants \
    FROM database_servers s";

/// Inserts a server. A taken name fails on `database_servers_name_key`.
pub async fn create(
    executor: impl PgExecutor<'_>,
    server: &NewServer<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO database_servers (id, name, host, port, admin_user, admin_password, \
         max_tenants, connection_budget, schema_version, system_identifier) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(server.id)
    .bind(server.name)
    .bind(server.host)
    .bind(server.port)
    .bind(server.admin_user)
    .bind(server.sealed_password)
    .bind(server.max_tenants)
    .bind(server.connection_budget)
    .bind(server.schema_version)
    .bind(server.system_identifier)
    .execute(executor)
    .await?;
    Ok(())
}

pub async fn list(pool: &PgPool) -> Result<Vec<Server>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} ORDER BY s.name"))
        .fetch_all(pool)
        .await
}

/// A server by name, its row locked until the transaction ends.
pub async fn lock_by_name(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<ServerId>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM database_servers WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(executor)
        .await
}

/// Sets a server's capacity; the routers hear of it at commit (`server:<id>`).
pub async fn set_capacity(
    executor: impl PgExecutor<'_>,
    id: ServerId,
    max_tenants: i32,
    connection_budget: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE database_servers SET max_tenants = $2, connection_budget = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(max_tenants)
    .bind(connection_budget)
    .execute(executor)
    .await?;
    Ok(())
}

/// A server's connection budget now.
pub async fn connection_budget(pool: &PgPool, id: ServerId) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT connection_budget FROM database_servers WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn get(
    executor: impl PgExecutor<'_>,
    id: ServerId,
) -> Result<Option<Server>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await
}

pub async fn secret(
    executor: impl PgExecutor<'_>,
    id: ServerId,
) -> Result<Option<ServerSecret>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, system_identifier, host, port, admin_user, admin_password \
         FROM database_servers WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(executor)
    .await
}

pub async fn all_secrets(pool: &PgPool) -> Result<Vec<ServerSecret>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, system_identifier, host, port, admin_user, admin_password \
         FROM database_servers ORDER BY name",
    )
    .fetch_all(pool)
    .await
}

/// Locks every active server and returns the one with the most free tenant slots (ties:
/// fewer tenants, then name), if any has room. Run inside the transaction that places the
/// tenant, so concurrent placements see each other's counts.
pub async fn lock_and_choose(
    connection: &mut sqlx::PgConnection,
) -> Result<Option<ServerId>, sqlx::Error> {
    sqlx::query("SELECT id FROM database_servers WHERE status = 'active' ORDER BY id FOR UPDATE")
        .execute(&mut *connection)
        .await?;
    sqlx::query_scalar(
        "SELECT s.id FROM database_servers s \
         LEFT JOIN tenants t ON t.server_id = s.id AND t.status <> 'deleted' \
         WHERE s.status = 'active' \
         GROUP BY s.id, s.max_tenants, s.name \
         HAVING count(t.id) < s.max_tenants \
         ORDER BY s.max_tenants - count(t.id) DESC, count(t.id) ASC, s.name \
         LIMIT 1",
    )
    .fetch_optional(&mut *connection)
    .await
}

pub async fn set_schema_version(
    pool: &PgPool,
    id: ServerId,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE database_servers SET schema_version = $2 WHERE id = $1")
        .bind(id)
        .bind(version)
        .execute(pool)
        .await?;
    Ok(())
}

/// Records a server's cluster identity (found for a server registered before identities).
/// Fails on `database_servers_system_identifier_key` if another server is that cluster.
pub async fn set_system_identifier(
    pool: &PgPool,
    id: ServerId,
    identity: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE database_servers SET system_identifier = $2 WHERE id = $1")
        .bind(id)
        .bind(identity)
        .execute(pool)
        .await?;
    Ok(())
}

/// The server registered for a cluster, if any.
pub async fn by_system_identifier(
    executor: impl PgExecutor<'_>,
    identity: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM database_servers WHERE system_identifier = $1")
        .bind(identity)
        .fetch_optional(executor)
        .await
}
