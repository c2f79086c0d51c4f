//! Extractors: the authenticated super-admin, and (from `tenancy-http`) JSON bodies and
//! query strings whose rejections are problem documents.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use tenancy_core::AdminId;

use crate::auth::AdminClaims;
use crate::error::ApiError;
use crate::state::AppState;

pub use tenancy_http::{Json, Query};

/// The super-admin making the request, from a verified bearer token of an admin who still
/// exists and is not disabled.
#[derive(Debug, Clone)]
pub struct CurrentAdmin {
    pub id: AdminId,
    pub email: String,
}

impl CurrentAdmin {
    pub fn actor(&self) -> catalog::audit::Actor {
        catalog::audit::Actor {
            id: Some(self.id),
            name: self.email.clone(),
        }
    }
}

impl FromRequestParts<AppState> for CurrentAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION);
        let token =
            tenancy_core::bearer::token(header.map(|value| value.as_bytes())).map_err(|error| {
                match error {
                    tenancy_core::bearer::BearerError::Missing => ApiError::Unauthorized {
                        code: "missing_token",
                        detail: "an Authorization: Bearer token is required".to_owned(),
                    },
                    tenancy_core::bearer::BearerError::Malformed => ApiError::Unauthorized {
                        code: "invalid_token",
                        detail: "the Authorization header must be `Bearer <token>`".to_owned(),
                    },
                }
            })?;
        let claims: AdminClaims =
            state
                .auth
                .verifier
                .verify(token)
                .map_err(|error| ApiError::Unauthorized {
                    code: "invalid_token",
                    detail: error.to_string(),
                })?;
        let id = claims.sub;
        let email = catalog::admins::active_email(&state.platform.db, id)
            .await?
            .ok_or_else(|| ApiError::Unauthorized {
                code: "invalid_token",
                detail: "the token's admin no longer exists or is disabled".to_owned(),
            })?;
        tracing::Span::current().record("admin_id", tracing::field::display(id));
        Ok(Self { id, email })
    }
}
