//! Extractors whose rejections are problem documents: JSON bodies, query strings, and the
//! authenticated super-admin.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenancy_core::AdminId;

use crate::auth::AdminClaims;
use crate::error::ApiError;
use crate::state::AppState;

/// `axum::Json`, but a rejected body is a problem document: 400 for broken JSON, 415 for a
/// missing content type, 413 for an oversized body, 422 for a wrong shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::InvalidBody(rejection.body_text()),
        _ => match rejection {
            JsonRejection::JsonSyntaxError(_) => ApiError::MalformedJson(rejection.body_text()),
            other => ApiError::BadRequest(other.body_text()),
        },
    }
}

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` with a problem-document rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::BadRequest(rejection.body_text()))
    }
}

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
        let header =
            parts
                .headers
                .get(header::AUTHORIZATION)
                .ok_or_else(|| ApiError::Unauthorized {
                    code: "missing_token",
                    detail: "an Authorization: Bearer token is required".to_owned(),
                })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::Unauthorized {
                code: "invalid_token",
                detail: "the Authorization header must be `Bearer <token>`".to_owned(),
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
