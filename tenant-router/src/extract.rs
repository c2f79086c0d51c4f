//! Extractors: the tenant of a request (from a verified token, with its pool), and JSON
//! bodies and query strings whose rejections are problem documents.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use catalog::tenants::Status;
use tenancy_core::claims::TenantClaims;

use crate::error::{RouterError, RouterResult};
use crate::pools::{Connection, TenantPool};
use crate::state::AppState;
use crate::tenant::TenantEntry;

/// The tenant a request acts for: verified token, directory entry, and its pool. Handlers
/// never look a tenant up themselves.
pub struct Tenant {
    pub claims: TenantClaims,
    pub entry: Arc<TenantEntry>,
    pool: Arc<TenantPool>,
    state: AppState,
}

impl Tenant {
    /// Refuses the request unless the token grants `permission`.
    pub fn require(&self, permission: &'static str) -> RouterResult<()> {
        if self.claims.allows(permission) {
            Ok(())
        } else {
            Err(RouterError::Forbidden(permission))
        }
    }

    /// Like [`Tenant::require`], for writes: also refused while the tenant is over its
    /// storage limit.
    pub fn require_write(&self, permission: &'static str) -> RouterResult<()> {
        self.require(permission)?;
        if self.entry.storage_exceeded {
            return Err(RouterError::StorageLimitExceeded);
        }
        Ok(())
    }

    /// A connection to the tenant's database, as the tenant's role.
    pub async fn connection(&self) -> RouterResult<Connection> {
        self.pool.connection(&self.state.pools).await
    }

    /// Who acts, for the tenant's audit log.
    pub fn actor(&self) -> &str {
        &self.claims.sub
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = RouterError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION);
        let token =
            tenancy_core::bearer::token(header.map(|value| value.as_bytes())).map_err(|error| {
                match error {
                    tenancy_core::bearer::BearerError::Missing => RouterError::MissingToken,
                    tenancy_core::bearer::BearerError::Malformed => RouterError::InvalidToken(
                        "the Authorization header must be `Bearer <token>`".to_owned(),
                    ),
                }
            })?;
        let claims: TenantClaims = state
            .verifier
            .verify(token)
            .map_err(|error| RouterError::InvalidToken(error.to_string()))?;
        let entry = state.directory.get(claims.tenant).await?.ok_or_else(|| {
            RouterError::InvalidToken("the token's tenant does not exist".to_owned())
        })?;
        match entry.status {
            Status::Active => {}
            Status::Suspended => return Err(RouterError::TenantSuspended),
            Status::Restoring => return Err(RouterError::TenantRestoring),
            Status::Deleting | Status::Deleted => {
                return Err(RouterError::InvalidToken(
                    "the token's tenant was deleted".to_owned(),
                ));
            }
            Status::Provisioning | Status::Failed => return Err(RouterError::TenantNotReady),
        }
        if entry.migrating {
            return Err(RouterError::TenantMigrating);
        }
        tracing::Span::current().record("tenant_id", tracing::field::display(entry.id));
        state
            .limiter
            .take(entry.id, entry.requests_per_minute)
            .map_err(|retry_after| RouterError::RateLimited { retry_after })?;
        state.usage.record(entry.id);
        let pool = state.pools.pool_for(&entry)?;
        Ok(Self {
            claims,
            entry,
            pool,
            state: state.clone(),
        })
    }
}

pub use tenancy_http::{Json, Query};
