//! Portal sessions: the cookie, the catalog row behind it, CSRF tokens.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tenancy_core::AdminId;

use super::{CSRF_HEADER, PortalError};
use crate::state::AppState;

/// The session cookie: a random token, its SHA-256 in the catalog.
pub const SESSION_COOKIE: &str = "tenancy_portal";
/// The sign-in form's CSRF cookie (there is no session yet).
pub const LOGIN_CSRF_COOKIE: &str = "tenancy_portal_login";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal, compared in time independent of where they differ.
pub fn same(left: &str, right: &str) -> bool {
    left.len() == right.len()
        && left
            .bytes()
            .zip(right.bytes())
            .fold(0_u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// The value of a request's cookie.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Sets (or, with `max_age` 0, clears) a portal cookie: `HttpOnly`, `SameSite=Strict`,
/// scoped to `/portal`, and `Secure` when the request came over TLS (as the proxy in
/// front says).
pub fn set_cookie(
    response: &mut Response,
    request: &HeaderMap,
    name: &str,
    value: &str,
    max_age: i64,
) {
    let secure = request
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{name}={value}; Path=/portal; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Opens a session for `admin`; the token for its cookie.
pub async fn open(state: &AppState, admin: AdminId) -> Result<String, sqlx::Error> {
    let token = random_token();
    catalog::portal::create(
        &state.platform.db,
        &hash(&token),
        admin,
        &random_token(),
        SESSION_SECONDS,
    )
    .await?;
    Ok(token)
}

/// The signed-in admin's session. A request without a live one is sent to the sign-in
/// page (htmx is told to go there with `HX-Redirect`).
pub struct CurrentSession {
    pub session: catalog::portal::Session,
    pub token_hash: [u8; 32],
}

impl CurrentSession {
    /// Who acts, for the audit log: the signed-in admin.
    pub fn actor(&self) -> catalog::audit::Actor {
        catalog::audit::Actor {
            id: Some(self.session.admin_id),
            name: self.session.email.clone(),
        }
    }

    /// The request's CSRF token (the form's `_csrf`, else the `X-CSRF-Token` header) must
    /// be this session's.
    pub fn check_csrf(&self, headers: &HeaderMap, field: Option<&str>) -> Result<(), PortalError> {
        let given = field.or_else(|| {
            headers
                .get(CSRF_HEADER)
                .and_then(|value| value.to_str().ok())
        });
        if given.is_some_and(|given| same(given, &self.session.csrf_token)) {
            Ok(())
        } else {
            Err(PortalError::Csrf)
        }
    }
}

/// Why there is no session: sent to sign in, or the catalog failed.
pub enum NoSession {
    SignIn { htmx: bool },
    Failed(PortalError),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn { htmx: true } => ([("hx-redirect", "/portal/login")], "").into_response(),
            Self::SignIn { htmx: false } => Redirect::to("/portal/login").into_response(),
            Self::Failed(error) => error.into_response(),
        }
    }
}

impl FromRequestParts<AppState> for CurrentSession {
    type Rejection = NoSession;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let htmx = parts.headers.contains_key("hx-request");
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|token| !token.is_empty())
        else {
            return Err(NoSession::SignIn { htmx });
        };
        let token_hash = hash(token);
        match catalog::portal::find(&state.platform.db, &token_hash).await {
            Ok(Some(session)) => Ok(Self {
                session,
                token_hash,
            }),
            Ok(None) => Err(NoSession::SignIn { htmx }),
            Err(error) => Err(NoSession::Failed(error.into())),
        }
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for CurrentSession {
    type Rejection = PortalError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(session) => Ok(Some(session)),
            Err(NoSession::SignIn { .. }) => Ok(None),
            Err(NoSession::Failed(error)) => Err(error),
        }
    }
}
