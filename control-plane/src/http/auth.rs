//! `POST /v1/auth/login`: a super-admin trades e-mail and password for an access token.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use catalog::plans::FieldError;
use serde::{Deserialize, Serialize};
use tenancy_core::password::verify_password;
use tenancy_core::{AdminId, Email};

use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/auth/login", post(login))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct LoginResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// The one answer to a wrong password, an unknown e-mail, a locked or a disabled account:
/// nothing in it (or in how long it takes) tells them apart.
fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_credentials",
        detail: "the e-mail or password is wrong (after five failures in five minutes an account is locked for five minutes)".to_owned(),
    }
}

/// A login: its credentials checked, then a token.
async fn login(
    State(state): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let admin = authenticate(&state, &body.email, body.password).await?;
    let access_token = state.auth.mint(admin).map_err(|error| {
        ApiError::internal(anyhow::Error::new(error).context("sign an access token"))
    })?;
    tracing::info!(admin_id = %admin, "super-admin logged in");
    Ok(Json(LoginResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.auth.ttl.as_secs(),
    }))
}

/// A super-admin's credentials, checked (the API's login and the portal's sign-in): the
/// attempt is claimed before the password is checked (a locked account gets no check),
/// and every check runs under the hash gate (bounded in number and memory). Unknown and
/// locked accounts wait as long as a check takes, without one.
pub(crate) async fn authenticate(
    state: &AppState,
    email: &str,
    password: String,
) -> ApiResult<AdminId> {
    let email: Email = email.parse().map_err(|error: tenancy_core::IdError| {
        ApiError::validation(vec![FieldError::new("email", error.0)])
    })?;
    let gate = &state.platform.hashes;
    let Some(admin) = catalog::admins::find_by_email(&state.platform.db, &email).await? else {
        gate.pretend().await;
        return Err(invalid_credentials());
    };
    if catalog::admins::claim_login_attempt(&state.platform.db, admin.id())
        .await?
        .is_none()
    {
        tracing::info!(admin_id = %admin.id, "super-admin login refused: account locked");
        gate.pretend().await;
        return Err(invalid_credentials());
    }
    // The attempt stays counted when the gate is full: a storm cannot buy extra tries.
    let permit = gate.enter().await.map_err(|_| {
        state.metrics.password_check("refused");
        ApiError::busy()
    })?;
    let hash = admin.password_hash.clone();
    state.metrics.password_check("verified");
    let matches = permit
        .run(move || verify_password(&hash, &password))
        .await
        .map_err(|error| {
            ApiError::internal(anyhow::Error::new(error).context("verify a password"))
        })?;
    if !matches || admin.disabled_at.is_some() {
        tracing::info!(admin_id = %admin.id, "super-admin login refused");
        return Err(invalid_credentials());
    }
    catalog::admins::record_login(&state.platform.db, admin.id()).await?;
    Ok(admin.id())
}
