//! The control plane's one error type. Every variant becomes an RFC 9457 problem document
//! with a stable `code`; internal errors become an opaque 500 and are logged once, here.
//! (Rejected bodies and query strings are answered by `tenancy_http`'s extractors.)

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use catalog::plans::FieldError;
use tenancy_http::Problem;

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422: values out of range or of the wrong form, per field.
    #[error("{detail}")]
    Validation {
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 400: a bad query string or path parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that are not accepted.
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    /// 404
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// 409
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 503: a dependency other than the catalog cannot do what was asked (a database server,
    /// or capacity); the request may succeed later.
    #[error("{detail}")]
    ServiceUnavailable { code: &'static str, detail: String },
    /// 503: a dependency (the catalog) is unavailable.
    #[error("the service is unavailable")]
    Unavailable,
    /// 500: anything unexpected. The detail is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(%error, "catalog unavailable");
                Self::Unavailable
            }
            // Class 08 (connection exception) and 57 (operator intervention, e.g. the
            // server shutting down) mean the catalog is away, not that we are broken.
            sqlx::Error::Database(ref database)
                if database
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57")) =>
            {
                tracing::warn!(%error, "catalog unavailable");
                Self::Unavailable
            }
            other => Self::Internal(anyhow::Error::new(other).context("query the catalog")),
        }
    }
}

impl ApiError {
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::NotFound {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::Validation {
            code: "validation_failed",
            detail,
            errors,
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Validation { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            Self::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            Self::ServiceUnavailable { code, .. } => (StatusCode::SERVICE_UNAVAILABLE, code),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let extra_header = match &self {
            Self::Unauthorized { .. } => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tenancy-control-plane\""),
            )),
            Self::ServiceUnavailable { .. } | Self::Unavailable => {
                Some((header::RETRY_AFTER, HeaderValue::from_static("1")))
            }
            _ => None,
        };
        let detail = match &self {
            Self::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                "an internal error occurred".to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = Problem::new(status, code, detail);
        if let Self::Validation { errors, .. } = self {
            problem.errors = serde_json::to_value(errors).ok();
        }
        let mut response = problem.into_response();
        if let Some((name, value)) = extra_header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl ApiError {
    /// 503 `busy`: too many password checks at once (the hash gate is full).
    pub fn busy() -> Self {
        Self::ServiceUnavailable {
            code: "busy",
            detail: "too many password checks at once; try again shortly".to_owned(),
        }
    }
}

/// Maps a unique or foreign-key violation on a named constraint to an [`ApiError`].
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> ApiError) -> ApiResult<T>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> ApiError) -> ApiResult<T> {
        self.map_err(|error| match &error {
            sqlx::Error::Database(database) if database.constraint() == Some(name) => map(),
            _ => ApiError::from(error),
        })
    }
}
