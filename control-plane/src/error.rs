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
    /// 401: no credentials, or credentials that are not accepted.
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    /// Everything else: what the operations (or a handler) say went wrong.
    #[error(transparent)]
    Ops(#[from] OpsError),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Ops(error.into())
    }
}

impl From<provisioner::backups::BackupError> for ApiError {
    fn from(error: provisioner::backups::BackupError) -> Self {
        Self::Ops(error.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::Ops(OpsError::Internal(error))
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

    pub fn bad_request(detail: impl Into<String>) -> Self {
        OpsError::BadRequest(detail.into()).into()
    }

    pub fn internal(error: anyhow::Error) -> Self {
        OpsError::Internal(error).into()
    }

    pub fn unavailable() -> Self {
        OpsError::Unavailable.into()
    }

    /// The one place an error meets HTTP: its status and stable code.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, code),
            Self::Ops(error) => match error {
                OpsError::Validation { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
                OpsError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                OpsError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
                OpsError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
                OpsError::ServiceUnavailable { code, .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, code)
                }
                OpsError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                OpsError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
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
            Self::Ops(OpsError::ServiceUnavailable { .. } | OpsError::Unavailable) => {
                Some((header::RETRY_AFTER, HeaderValue::from_static("1")))
            }
            _ => None,
        };
        let detail = match &self {
            Self::Ops(OpsError::Internal(error)) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                "an internal error occurred".to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = Problem::new(status, code, detail);
        if let Self::Ops(OpsError::Validation { errors, .. }) = self {
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
