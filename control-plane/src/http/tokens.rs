//! `POST /v1/tenants/{slug}/tokens`: a service token for a tenant app.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tenancy_http::Path;

use crate::error::ApiResult;
use crate::extract::{CurrentAdmin, Json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tenants/{slug}/tokens", post(mint))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintToken {
    scopes: Vec<String>,
    /// Seconds; default one hour.
    ttl: Option<i64>,
}

#[derive(Serialize)]
struct MintedToken {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    expires_at: chrono::DateTime<Utc>,
    tenant: tenancy_core::TenantId,
    scopes: Vec<String>,
}

async fn mint(
    State(state): State<AppState>,
    admin: CurrentAdmin,
    Path(slug): Path<String>,
    Json(body): Json<MintToken>,
) -> ApiResult<(StatusCode, Json<MintedToken>)> {
    let (token, claims) = provisioner::tokens::mint(
        &state.platform,
        &admin.actor(),
        &slug,
        body.scopes,
        body.ttl,
        state.auth.issuer(),
        |claims| Ok(state.auth.sign(claims)?),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(MintedToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: claims.exp - claims.iat,
            expires_at: Utc
                .timestamp_opt(claims.exp, 0)
                .single()
                .unwrap_or_default(),
            tenant: claims.tenant,
            scopes: claims.scopes,
        }),
    ))
}
