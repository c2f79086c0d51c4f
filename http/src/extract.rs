//! `Json` and `Query` whose rejections are problem documents: 400 `malformed_json` for
//! broken JSON, 415 without a JSON content type, 413 over the body limit, 422
//! `invalid_body` for a wrong shape (types, missing or unknown fields), 400 `bad_request`
//! for a bad query string.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Problem;

#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Self(value))
            .map_err(|rejection| {
                let status = rejection.status();
                let code = match (&rejection, status) {
                    (_, StatusCode::PAYLOAD_TOO_LARGE) => "payload_too_large",
                    (_, StatusCode::UNSUPPORTED_MEDIA_TYPE) => "unsupported_media_type",
                    (_, StatusCode::UNPROCESSABLE_ENTITY) => "invalid_body",
                    (JsonRejection::JsonSyntaxError(_), _) => "malformed_json",
                    _ => "bad_request",
                };
                let detail = match code {
                    "payload_too_large" => "the body is too large".to_owned(),
                    "unsupported_media_type" => {
                        "the body must be JSON (Content-Type: application/json)".to_owned()
                    }
                    _ => rejection.body_text(),
                };
                Problem::new(status, code, detail)
            })
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    rejection.body_text(),
                )
            })
    }
}
