//! What tenant tokens say. The control plane mints them for tenant apps; the router
//! verifies them. A token names its tenant by id, never by slug: a slug can be taken again
//! after a deletion, an id cannot.

use serde::{Deserialize, Serialize};

use crate::TenantId;

/// The `aud` of tenant tokens (admin tokens carry another, so neither is accepted in place
/// of the other).
pub const TENANT_AUDIENCE: &str = "tenancy-tenant";

/// The permission codes a tenant token's scopes may name (the tenant schema's permissions).
pub const SCOPES: &[&str] = &[
    "users.read",
    "users.write",
    "roles.read",
    "roles.write",
    "customers.read",
    "customers.write",
    "suppliers.read",
    "suppliers.write",
    "products.read",
    "products.write",
    "orders.read",
    "orders.write",
    "orders.approve",
    "audit.read",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantClaims {
    /// Who: `service:<uuid>` for a service token.
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: uuid::Uuid,
    /// The tenant the token is for.
    pub tenant: TenantId,
    /// What it may do: permission codes from [`SCOPES`].
    pub scopes: Vec<String>,
}

impl TenantClaims {
    pub fn allows(&self, permission: &str) -> bool {
        self.scopes.iter().any(|scope| scope == permission)
    }
}
