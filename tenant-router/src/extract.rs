//! Extractors: the tenant of a request (from a verified token, with its pool), and JSON
//! bodies and query strings whose rejections are problem documents.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use catalog::tenants::Status;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenancy_core::claims::TenantClaims;

use crate::directory::TenantEntry;
use crate::error::{RouterError, RouterResult};
use crate::pools::{Connection, TenantPool};
use crate::state::AppState;

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
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(RouterError::MissingToken)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                RouterError::InvalidToken(
                    "the Authorization header must be `Bearer <token>`".to_owned(),
                )
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
            Status::Deleting | Status::Deleted => {
                return Err(RouterError::InvalidToken(
                    "the token's tenant was deleted".to_owned(),
                ));
            }
            Status::Provisioning | Status::Failed => return Err(RouterError::TenantNotReady),
        }
        tracing::Span::current().record("tenant_id", tracing::field::display(entry.id));
        state
            .limiter
            .take(entry.id.0, entry.requests_per_minute)
            .map_err(|retry_after| RouterError::RateLimited { retry_after })?;
        state.usage.record(entry.id.0);
        let pool = state.pools.pool_for(&entry)?;
        Ok(Self {
            claims,
            entry,
            pool,
            state: state.clone(),
        })
    }
}

/// `axum::Json` with problem-document rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = RouterError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Self(value))
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => RouterError::PayloadTooLarge,
                StatusCode::UNSUPPORTED_MEDIA_TYPE => RouterError::UnsupportedMediaType,
                StatusCode::UNPROCESSABLE_ENTITY => RouterError::Invalid {
                    code: "invalid_body",
                    detail: rejection.body_text(),
                },
                _ => match rejection {
                    JsonRejection::JsonSyntaxError(_) => {
                        RouterError::MalformedJson(rejection.body_text())
                    }
                    other => RouterError::BadRequest(other.body_text()),
                },
            })
    }
}

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with a problem-document rejection.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = RouterError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| RouterError::BadRequest(rejection.body_text()))
    }
}
