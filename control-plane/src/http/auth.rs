//! `POST /v1/auth/login`: a super-admin trades e-mail and password for an access token.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use catalog::plans::FieldError;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tenancy_core::Email;
use tenancy_core::password::{verify_against_dummy, verify_password};

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

fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized {
        code: "invalid_credentials",
        detail: "the e-mail or password is wrong".to_owned(),
    }
}

async fn login(
    State(state): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let email: Email = body.email.parse().map_err(|error: tenancy_core::IdError| {
        ApiError::validation(vec![FieldError::new("email", error.0)])
    })?;
    let password = body.password;
    let Some(admin) = catalog::admins::find_by_email(&state.platform.db, &email).await? else {
        // Spend the same time as a real check so that timing does not reveal accounts.
        let _ = tokio::task::spawn_blocking(move || verify_against_dummy(&password)).await;
        return Err(invalid_credentials());
    };
    if let Some(locked_until) = admin.locked_until.filter(|until| *until > Utc::now()) {
        return Err(ApiError::Locked {
            retry_after_seconds: (locked_until - Utc::now()).num_seconds() + 1,
        });
    }
    let hash = admin.password_hash.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .map_err(|error| {
            ApiError::Internal(anyhow::Error::new(error).context("verify a password"))
        })?;
    if !matches || admin.disabled_at.is_some() {
        catalog::admins::record_failed_login(&state.platform.db, admin.id()).await?;
        tracing::info!(admin_id = %admin.id, "super-admin login refused");
        return Err(invalid_credentials());
    }
    catalog::admins::record_login(&state.platform.db, admin.id()).await?;
    let access_token = state.auth.mint(admin.id()).map_err(|error| {
        ApiError::Internal(anyhow::Error::new(error).context("sign an access token"))
    })?;
    tracing::info!(admin_id = %admin.id, "super-admin logged in");
    Ok(Json(LoginResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.auth.ttl.as_secs(),
    }))
}
