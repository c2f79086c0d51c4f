//! The control plane's one error type. Every variant becomes an RFC 9457 problem document
//! with a stable `code`; internal errors become an opaque 500 and are logged once, here.
//! (Rejected bodies and query strings are answered by `tenancy_http`'s extractors.)

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use catalog::plans::FieldError;
use provisioner::error::OpsError;
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
        OpsError::from(error).into()
    }
}

/// The operations' errors, one to one: the only place they meet HTTP.
impl From<OpsError> for ApiError {
    fn from(error: OpsError) -> Self {
        match error {
            OpsError::Validation {
                code,
                detail,
                errors,
            } => Self::Validation {
                code,
                detail,
                errors,
            },
            OpsError::BadRequest(detail) => Self::BadRequest(detail),
            OpsError::NotFound { code, detail } => Self::NotFound { code, detail },
            OpsError::Conflict { code, detail } => Self::Conflict { code, detail },
            OpsError::ServiceUnavailable { code, detail } => {
                Self::ServiceUnavailable { code, detail }
            }
            OpsError::Unavailable => Self::Unavailable,
            OpsError::Internal(error) => Self::Internal(error),
        }
    }
}

impl From<provisioner::backups::BackupError> for ApiError {
    fn from(error: provisioner::backups::BackupError) -> Self {
        OpsError::from(error).into()
    }
}

impl ApiError {
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        OpsError::not_found(code, detail).into()
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        OpsError::conflict(code, detail).into()
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        OpsError::validation(errors).into()
    }

    pub fn busy() -> Self {
        OpsError::busy().into()
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
