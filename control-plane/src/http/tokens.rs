//! `POST /v1/tenants/{slug}/tokens`: a service token for a tenant app.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use catalog::audit::Change;
use catalog::plans::FieldError;
use catalog::tenants::Status;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tenancy_core::claims::{SCOPES, TENANT_AUDIENCE, TenantClaims};
use tenancy_http::Path;

use crate::error::{ApiError, ApiResult};
use crate::extract::{CurrentAdmin, Json};
use crate::state::AppState;

/// The longest a service token may live.
const MAX_TTL_SECONDS: i64 = 90 * 24 * 3600;

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
    let mut errors = Vec::new();
    let unknown: Vec<&str> = body
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|scope| !SCOPES.contains(scope))
        .collect();
    if !unknown.is_empty() {
        errors.push(FieldError::new(
            "scopes",
            format!("unknown scopes: {}", unknown.join(", ")),
        ));
    }
    if body.scopes.is_empty() {
        errors.push(FieldError::new("scopes", "name at least one scope"));
    }
    let ttl = body.ttl.unwrap_or(3600);
    if !(60..=MAX_TTL_SECONDS).contains(&ttl) {
        errors.push(FieldError::new(
            "ttl",
            format!("must be between 60 and {MAX_TTL_SECONDS} seconds"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let tenant = crate::tenants::get(&state.platform, &slug).await?;
    if tenant.status != Status::Active {
        return Err(ApiError::conflict(
            "tenant_not_active",
            format!(
                "tokens are issued for active tenants; `{slug}` is `{}`",
                tenant.status
            ),
        ));
    }
    let mut scopes = body.scopes;
    scopes.sort();
    scopes.dedup();
    let now = Utc::now().timestamp();
    let claims = TenantClaims {
        sub: format!("service:{}", uuid::Uuid::new_v4()),
        iss: state.auth.issuer().to_owned(),
        aud: TENANT_AUDIENCE.to_owned(),
        iat: now,
        exp: now + ttl,
        jti: uuid::Uuid::new_v4(),
        tenant: tenant.id,
        scopes: scopes.clone(),
    };
    let token = state.auth.sign(&claims).map_err(|error| {
        ApiError::internal(anyhow::Error::new(error).context("sign a tenant token"))
    })?;
    let mut transaction = state.platform.db.begin().await?;
    catalog::audit::record(
        &mut *transaction,
        &admin.actor(),
        Change {
            action: "tenant.token",
            entity_type: "tenant",
            entity_id: &tenant.id.to_string(),
            before: None,
            after: Some(serde_json::json!({ "jti": claims.jti, "sub": claims.sub, "scopes": scopes, "exp": claims.exp })),
        },
    )
    .await?;
    transaction.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(MintedToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: ttl,
            expires_at: Utc
                .timestamp_opt(claims.exp, 0)
                .single()
                .unwrap_or_default(),
            tenant: tenant.id,
            scopes,
        }),
    ))
}
