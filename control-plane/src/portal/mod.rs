//! The super-admins' portal: server-rendered pages (askama templates compiled into the
//! binary) with htmx for partial updates, every asset embedded. It runs the same
//! operations as the API, as the signed-in admin.
//!
//! Sessions live in the catalog (`catalog::portal`): the cookie holds a random token, the
//! catalog its SHA-256; signing out or disabling the admin ends a session at once. Every
//! POST carries the session's CSRF token (a form field, or htmx's `X-CSRF-Token` header);
//! the sign-in form, before there is a session, carries a token that must equal the one in
//! its own short-lived cookie. Every answer carries a strict Content-Security-Policy (no
//! inline scripts, nothing from another origin), `X-Frame-Options: DENY` and
//! `Referrer-Policy: same-origin`.

mod assets;
mod charts;
mod fleet;
mod format;
mod plans;
mod servers;
mod session;
mod tenant_page;
mod tenants;

use askama::Template;
use axum::extract::State;
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;
use session::{CurrentSession, LOGIN_CSRF_COOKIE, SESSION_COOKIE};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(|| async { Redirect::to("/portal/tenants") }))
        .route("/portal/login", get(login_page).post(login))
        .route("/portal/logout", post(logout))
        .route("/portal/assets/{name}", get(assets::serve))
        .merge(tenants::router())
        .merge(tenant_page::router())
        .merge(fleet::router())
        .merge(plans::router())
        .merge(servers::router())
        .layer(axum::middleware::map_response(security_headers))
}

/// The headers every portal answer carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A page, or the plain error page a portal request ends on (never a stack trace: the
/// cause is logged).
pub enum PortalError {
    /// The request did not carry the CSRF token of its session or sign-in form.
    Csrf,
    /// No such page or thing.
    NotFound,
    Internal(ApiError),
}

impl<E: Into<ApiError>> From<E> for PortalError {
    /// An operation's "no such thing" is this page's 404; anything else is internal.
    fn from(error: E) -> Self {
        match error.into() {
            ApiError::Ops(provisioner::error::OpsError::NotFound { .. }) => Self::NotFound,
            error => Self::Internal(error),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    heading: &'a str,
    message: &'a str,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was not sent from this portal's own page (its CSRF token is missing \
                 or wrong), so nothing was changed. Reload the page and try again.",
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here; it may have been deleted.",
            ),
            Self::Internal(error) => {
                tracing::error!(error = %error, "portal request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The request could not be completed; the cause has been logged.",
                )
            }
        };
        render(
            status,
            &ErrorPage {
                admin: None,
                csrf: None,
                heading,
                message,
            },
        )
    }
}

/// A field of a form (`portal/fields.html`): what was typed (never a password), its problem.
pub struct FormField {
    pub name: &'static str,
    pub label: &'static str,
    /// An input's `type`, or `select` (then `options` are its choices).
    pub kind: &'static str,
    pub value: String,
    pub error: Option<String>,
    pub hint: Option<&'static str>,
    pub options: Vec<(String, bool)>,
}

impl FormField {
    /// A field showing `value`, with its problem from `errors` (field, message) if any.
    pub fn new(
        name: &'static str,
        label: &'static str,
        kind: &'static str,
        value: String,
        errors: &[(String, String)],
    ) -> Self {
        Self {
            name,
            label,
            kind,
            value,
            error: errors
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, message)| message.clone()),
            hint: None,
            options: Vec::new(),
        }
    }

    pub fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

/// A form's problems, field by field, as `(field, message)`.
#[derive(Default)]
pub struct FieldProblems(pub Vec<(String, String)>);

impl FieldProblems {
    /// The operations library's field errors.
    pub fn of(errors: Vec<catalog::plans::FieldError>) -> Self {
        Self(
            errors
                .into_iter()
                .map(|error| (error.field, error.message))
                .collect(),
        )
    }

    /// `text` as a whole number; else 0, and the field's problem noted.
    pub fn whole(&mut self, field: &str, text: &str) -> i64 {
        text.trim().parse::<i64>().unwrap_or_else(|_| {
            self.0
                .push((field.to_owned(), "must be a whole number".to_owned()));
            0
        })
    }
}

/// A template as an HTML answer.
fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "render a portal page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "portal/login.html")]
struct LoginPage<'a> {
    admin: Option<&'a str>,
    csrf: Option<String>,
    login_csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

/// The sign-in form, with a fresh sign-in CSRF token in its cookie and field.
fn login_form(
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
) -> Response {
    let token = session::random_token();
    let mut response = render(
        status,
        &LoginPage {
            admin: None,
            csrf: None,
            login_csrf: &token,
            email,
            error,
        },
    );
    session::set_cookie(&mut response, headers, LOGIN_CSRF_COOKIE, &token, 600);
    response
}

async fn login_page(headers: HeaderMap, session: Option<CurrentSession>) -> Response {
    if session.is_some() {
        return Redirect::to("/portal/tenants").into_response();
    }
    login_form(&headers, StatusCode::OK, "", None)
}

/// The sign-in form; a missing field is an empty one (answered on the page, not as a
/// rejected body).
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(rename = "_csrf", default)]
    csrf: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PortalError> {
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE);
    if !expected.is_some_and(|expected| session::same(expected, &form.csrf)) {
        return Err(PortalError::Csrf);
    }
    match crate::http::auth::authenticate(&state, &form.email, form.password).await {
        Ok(admin) => {
            let token = session::open(&state, admin).await?;
            tracing::info!(admin_id = %admin, "super-admin signed in to the portal");
            let mut response = Redirect::to("/portal/tenants").into_response();
            session::set_cookie(
                &mut response,
                &headers,
                SESSION_COOKIE,
                &token,
                session::SESSION_SECONDS,
            );
            session::set_cookie(&mut response, &headers, LOGIN_CSRF_COOKIE, "", 0);
            Ok(response)
        }
        Err(error) => {
            let (status, message) = match &error {
                ApiError::Unauthorized { detail, .. } => (StatusCode::UNAUTHORIZED, detail.clone()),
                ApiError::Ops(provisioner::error::OpsError::Validation { .. }) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "That is not an e-mail address.".to_owned(),
                ),
                ApiError::Ops(provisioner::error::OpsError::ServiceUnavailable { .. }) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Too many sign-ins at once; try again in a moment.".to_owned(),
                ),
                _ => return Err(PortalError::Internal(error)),
            };
            Ok(login_form(&headers, status, &form.email, Some(&message)))
        }
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: CurrentSession,
    Form(form): Form<LogoutForm>,
) -> Result<Response, PortalError> {
    session.check_csrf(&headers, form.csrf.as_deref())?;
    catalog::portal::delete(&state.platform.db, &session.token_hash).await?;
    tracing::info!(admin_id = %session.session.admin_id, "super-admin signed out of the portal");
    let mut response = Redirect::to("/portal/login").into_response();
    session::set_cookie(&mut response, &headers, SESSION_COOKIE, "", 0);
    Ok(response)
}

/// The header htmx sends the CSRF token in.
pub(crate) const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");
