//! A tenant as the router needs it: what the directory caches and the pools are bound to.

use catalog::tenants::Status;
use secrecy::SecretString;
use tenancy_core::{ServerId, TenantId};

/// Where a tenant's database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    pub id: ServerId,
    pub host: String,
    pub port: u16,
    pub connection_budget: u32,
}

/// One tenant, as the router needs it.
#[derive(Debug)]
pub struct TenantEntry {
    pub id: TenantId,
    pub slug: String,
    pub status: Status,
    pub plan: String,
    pub server: Option<ServerRef>,
    pub database: Option<String>,
    pub role: Option<String>,
    pub password: Option<SecretString>,
    pub max_users: u32,
    pub max_connections: u32,
    pub statement_timeout_ms: u32,
    pub requests_per_minute: u32,
    pub storage_exceeded: bool,
    pub migrating: bool,
}
