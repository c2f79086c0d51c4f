//! The router's one error type; every variant is an RFC 9457 problem document with a
//! stable `code`. Database and unexpected errors are an opaque 500, logged once here.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tenancy_http::Problem;

pub type RouterResult<T> = Result<T, RouterError>;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// 401: no bearer token.
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    /// 401: the token is not accepted (bad signature, expired, wrong audience, ...), or its
    /// tenant is unknown or deleted.
    #[error("{0}")]
    InvalidToken(String),
    /// 401: bad credentials, a refresh token that is not accepted, an ended session.
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    /// 403: the request names one tenant and its token is for another.
    #[error("the token is for another tenant than the one the request names")]
    TenantMismatch,
    /// 429: too many failed sign-ins for this e-mail.
    #[error("too many failed sign-ins; try again later")]
    AccountLocked { retry_after: Duration },
    /// 503: too many password checks at once.
    #[error("too many sign-ins at once; retry shortly")]
    Busy,
    /// 503: the tenant's events feed is not available (its database could not be reached).
    #[error("live events for this tenant are unavailable; retry shortly")]
    EventsUnavailable,
    /// 403: the plan's limit is reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// 403: the tenant is suspended.
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// 403: the token lacks the permission the route needs.
    #[error("this request needs the permission `{0}`")]
    Forbidden(&'static str),
    /// 403: the tenant is over its storage limit; reads still work.
    #[error("the tenant is over its storage limit; writes are refused until it is under again")]
    StorageLimitExceeded,
    /// 429: over the plan's request rate.
    #[error("too many requests for this tenant's plan")]
    RateLimited { retry_after: Duration },
    /// 503: no connection could be had in time.
    #[error("no database connection was free in time; retry shortly")]
    PoolTimeout,
    /// 503: the tenant's database server is unavailable.
    #[error("the tenant's database is unavailable; retry shortly")]
    ServerUnavailable,
    /// 503: the tenant is being provisioned.
    #[error("the tenant is not ready yet")]
    TenantNotReady,
    /// 503: a fleet migration is changing the tenant's schema.
    #[error("the tenant's database is being migrated to a new schema version; retry shortly")]
    TenantMigrating,
    /// 503: a backup is being restored over the tenant.
    #[error("a backup is being restored over the tenant's database; retry shortly")]
    TenantRestoring,
    /// 503: the catalog is unavailable.
    #[error("the service is unavailable")]
    CatalogUnavailable,
    /// 400: bad query or path.
    #[error("{0}")]
    BadRequest(String),
    /// 422: wrong shape or invalid values.
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    /// 404
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// 409
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 412: `If-Match` names another version than the current one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 500: logged, never described to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl RouterError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            Self::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Self::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            Self::TenantMismatch => (StatusCode::FORBIDDEN, "tenant_mismatch"),
            Self::AccountLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, "account_locked"),
            Self::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::EventsUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "events_unavailable"),
            Self::LimitExceeded(_) => (StatusCode::FORBIDDEN, "limit_exceeded"),
            Self::TenantSuspended => (StatusCode::FORBIDDEN, "tenant_suspended"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::StorageLimitExceeded => (StatusCode::FORBIDDEN, "storage_limit_exceeded"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::PoolTimeout => (StatusCode::SERVICE_UNAVAILABLE, "pool_timeout"),
            Self::ServerUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "server_unavailable"),
            Self::TenantNotReady => (StatusCode::SERVICE_UNAVAILABLE, "tenant_not_ready"),
            Self::TenantMigrating => (StatusCode::SERVICE_UNAVAILABLE, "tenant_migrating"),
            Self::TenantRestoring => (StatusCode::SERVICE_UNAVAILABLE, "tenant_restoring"),
            Self::CatalogUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } | Self::AccountLocked { retry_after } => {
                Some(retry_after.as_secs().max(1))
            }
            Self::PoolTimeout
            | Self::ServerUnavailable
            | Self::TenantNotReady
            | Self::TenantMigrating
            | Self::TenantRestoring
            | Self::Busy
            | Self::EventsUnavailable
            | Self::CatalogUnavailable => Some(1),
            _ => None,
        }
    }
}

impl RouterError {
    /// The stable code a client sees.
    pub fn code(&self) -> &'static str {
        self.status_and_code().1
    }

    /// Whether the tenant itself is not served now: suspended, deleted, not ready, or
    /// being restored over (its database is about to be replaced). A fleet migration is
    /// not one: it passes, and the tenant's database stays.
    pub fn is_tenant_unavailable(&self) -> bool {
        matches!(
            self,
            Self::TenantSuspended
                | Self::TenantRestoring
                | Self::TenantNotReady
                | Self::InvalidToken(_)
        )
    }
}

impl From<sqlx::Error> for RouterError {
    fn from(error: sqlx::Error) -> Self {
        tracing::warn!(%error, "catalog read failed");
        Self::CatalogUnavailable
    }
}

/// Errors from a tenant database: connection trouble is 503, constraint violations are the
/// caller's to map first, anything else is a 500.
impl From<tokio_postgres::Error> for RouterError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.is_closed() || error.as_db_error().is_none() {
            tracing::warn!(%error, "tenant database connection failed");
            return Self::ServerUnavailable;
        }
        let code = error
            .code()
            .map(|code| code.code().to_owned())
            .unwrap_or_default();
        if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
            tracing::warn!(error = %describe(&error), "tenant database unavailable");
            return Self::ServerUnavailable;
        }
        Self::Internal(anyhow::anyhow!("tenant database: {}", describe(&error)))
    }
}

/// The server's own message and SQLSTATE (tokio-postgres' `Display` says only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(
        || error.to_string(),
        |db| format!("{} (SQLSTATE {})", db.message(), db.code().code()),
    )
}

impl IntoResponse for RouterError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let detail = match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                "an internal error occurred".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = Problem::new(status, code, detail).into_response();
        if let Some(seconds) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenancy\""),
            );
        }
        response
    }
}
