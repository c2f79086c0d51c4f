//! The operations' one error type: what went wrong, in terms a caller can act on, with no
//! HTTP in it. The control plane maps it once into problem documents; `tenantctl` prints
//! it.

use catalog::plans::FieldError;

pub type OpsResult<T> = Result<T, OpsError>;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Values out of range or of the wrong form, per field.
    #[error("{detail}")]
    Validation {
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// A bad query or identifier.
    #[error("{0}")]
    BadRequest(String),
    /// No such thing.
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// Not possible in the current state.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// A dependency other than the catalog cannot do what was asked now (a database
    /// server, S3, capacity); the same may succeed later.
    #[error("{detail}")]
    ServiceUnavailable { code: &'static str, detail: String },
    /// The catalog is unavailable.
    #[error("the service is unavailable")]
    Unavailable,
    /// Anything unexpected.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for OpsError {
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

impl OpsError {
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

    /// Too many password checks at once (the hash gate is full).
    pub fn busy() -> Self {
        Self::ServiceUnavailable {
            code: "busy",
            detail: "too many password checks at once; try again shortly".to_owned(),
        }
    }
}

/// Maps a unique or foreign-key violation on a named constraint to an [`OpsError`].
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> OpsError) -> OpsResult<T>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> OpsError) -> OpsResult<T> {
        self.map_err(|error| match &error {
            sqlx::Error::Database(database) if database.constraint() == Some(name) => map(),
            _ => OpsError::from(error),
        })
    }
}
