//! `Json`, `Query` and `Path` whose rejections are problem documents: 400 `malformed_json`
//! for broken JSON (invalid UTF-8 included), 415 without a JSON content type, 413 over the
//! body limit, 422 `invalid_body` for a wrong shape (types, missing or unknown fields) or a
//! NUL character in any string, 400 `bad_request` for a bad query string or path segment
//! (a NUL or invalid UTF-8 included). PostgreSQL cannot store NUL in text, so it never
//! gets that far.

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
        let value = axum::Json::<serde_json::Value>::from_request(request, state)
            .await
            .map(|axum::Json(value)| value)
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
            })?;
        if let Some(path) = nul_in(&value, String::new()) {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("{path}: text may not contain a NUL character"),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(Self)
            .map_err(|error| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("Failed to deserialize the JSON body into the target type: {error}"),
                )
            })
    }
}

/// Where a JSON value holds a NUL character (in a string or an object key), if anywhere.
fn nul_in(value: &serde_json::Value, at: String) -> Option<String> {
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| or_root(at)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_in(item, format!("{at}[{index}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let here = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            if key.contains('\0') {
                Some(or_root(at.clone()))
            } else {
                nul_in(item, here)
            }
        }),
        _ => None,
    }
}

fn or_root(at: String) -> String {
    if at.is_empty() {
        "the body".to_owned()
    } else {
        at
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
        let pairs = axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    rejection.body_text(),
                )
            })?;
        if !decodes_to_utf8(parts.uri.query().unwrap_or_default()) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the query string is not UTF-8 once percent-decoded",
            ));
        }
        if let Some((name, _)) = pairs
            .0
            .iter()
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "query parameter `{}`: no NUL characters",
                    name.replace('\0', "")
                ),
            ));
        }
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

/// Whether a percent-encoded text is UTF-8 once decoded (the decoders used by the
/// extractors would otherwise put U+FFFD in place of what is not).
fn decodes_to_utf8(encoded: &str) -> bool {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|byte| (*byte as char).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(0));
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// Path parameters (as axum's `Path`), with NUL or invalid UTF-8 answered 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |detail: String| Problem::new(StatusCode::BAD_REQUEST, "bad_request", detail);
        let raw = axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| bad(rejection.body_text()))?;
        if raw.0.iter().any(|(_, value)| value.contains('\0')) {
            return Err(bad(
                "a path segment may not contain a NUL character".to_owned()
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| bad(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoded_text_must_be_utf8() {
        assert!(decodes_to_utf8(""));
        assert!(decodes_to_utf8("q=caf%C3%A9&limit=5"));
        assert!(decodes_to_utf8("q=100%"), "a lone % is not an escape");
        assert!(!decodes_to_utf8("q=%FF%FE"));
        assert!(!decodes_to_utf8("q=%C3"), "a cut sequence");
    }

    #[test]
    fn a_nul_anywhere_in_a_json_value_is_found_with_its_path() {
        let clean = serde_json::json!({ "name": "Acme", "tags": ["a", "b"], "n": 1 });
        assert_eq!(nul_in(&clean, String::new()), None);
        let nested = serde_json::json!({ "limits": { "note": "x\u{0}y" } });
        assert_eq!(
            nul_in(&nested, String::new()).as_deref(),
            Some("limits.note")
        );
        let listed = serde_json::json!({ "scopes": ["ok", "bad\u{0}"] });
        assert_eq!(nul_in(&listed, String::new()).as_deref(), Some("scopes[1]"));
        let key = serde_json::json!({ "a\u{0}": 1 });
        assert_eq!(nul_in(&key, String::new()).as_deref(), Some("the body"));
        assert_eq!(
            nul_in(&serde_json::json!("\u{0}"), String::new()).as_deref(),
            Some("the body")
        );
    }
}
