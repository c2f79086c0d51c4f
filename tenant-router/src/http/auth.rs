//! Sign-in and the token lifecycle: `POST /v1/auth/login`, `/refresh`, `/logout`, and
//! `GET /v1/auth/me`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::table::Routes;
use super::users::{self, User};
use crate::audit::Change;
use crate::auth::lockout::{self, Attempt};
use crate::auth::secrets::{self, Kind};
use crate::auth::sessions::{self, Refreshed};
use crate::error::{RouterError, RouterResult};
use crate::extract::{Json, Origin, Principal, Tenant, admit, named_tenant};
use crate::ids::{SessionId, UserId};
use crate::state::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .post("/v1/auth/login", login)
        .post("/v1/auth/refresh", refresh)
        .post("/v1/auth/logout", logout)
        .get("/v1/auth/me", me)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Serialize)]
struct Tokens {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    refresh_expires_in: u64,
}

fn invalid_credentials() -> RouterError {
    RouterError::Unauthorized {
        code: "invalid_credentials",
        detail: "the e-mail or the password is wrong".to_owned(),
    }
}

fn invalid_refresh_token() -> RouterError {
    RouterError::Unauthorized {
        code: "invalid_refresh_token",
        detail: "the refresh token is not valid (unknown, expired, or its session has ended)"
            .to_owned(),
    }
}

fn tokens(
    state: &AppState,
    tenant: tenancy_core::TenantId,
    user: UserId,
    session: SessionId,
    refresh_token: String,
) -> RouterResult<Json<Tokens>> {
    let (access_token, expires_in) = state
        .auth
        .tokens
        .issue(tenant, user, session)
        .map_err(|error| RouterError::Internal(anyhow::Error::new(error)))?;
    Ok(Json(Tokens {
        access_token,
        token_type: "Bearer",
        expires_in,
        refresh_token,
        refresh_expires_in: state.auth.refresh_ttl.as_secs(),
    }))
}

/// Signs a user in. An unknown e-mail, a wrong password and a disabled account get the
/// same answer after the same work; every attempt on an e-mail counts towards its lockout
/// before the password is checked.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    origin: Origin,
    Json(body): Json<Credentials>,
) -> RouterResult<Json<Tokens>> {
    let slug = named_tenant(&headers, state.auth.base_domain.as_deref())?.ok_or_else(|| {
        RouterError::BadRequest(
            "name the tenant: an `X-Tenant: <slug>` header (or a host under the base domain)"
                .to_owned(),
        )
    })?;
    let email =
        body.email
            .parse::<tenancy_core::Email>()
            .map_err(|error| RouterError::Invalid {
                code: "validation_failed",
                detail: format!("email: {error}"),
            })?;
    let email = email.as_str().to_owned();
    if body.password.is_empty() || body.password.len() > 1024 {
        return Err(RouterError::Invalid {
            code: "validation_failed",
            detail: "password: must be 1 to 1024 bytes".to_owned(),
        });
    }
    let tenant = state
        .directory
        .id_for_slug(&slug)
        .await?
        .ok_or_else(invalid_credentials)?;
    let (entry, pool) = admit(&state, tenant).await?;

    let connection = pool.connection(&state.pools).await?;
    // Now and then (1 in 64), a sign-in clears what has expired.
    if rand::random::<u8>() < 4 {
        lockout::forget_stale(&*connection.client, &state.auth.lockout).await?;
        sessions::prune(&*connection.client).await?;
    }
    if let Attempt::Locked { retry_after } =
        lockout::reserve(&*connection.client, &email, &state.auth.lockout).await?
    {
        return Err(RouterError::AccountLocked { retry_after });
    }
    let account = connection
        .client
        .query_opt(
            "SELECT id, password_hash, is_active FROM users WHERE email = $1",
            &[&email],
        )
        .await?;
    // No connection is held while the password is checked.
    drop(connection);

    let permit = state
        .auth
        .hashes
        .enter()
        .await
        .map_err(|_| RouterError::Busy)?;
    let user = match account {
        Some(row) => {
            let hash: String = row.get("password_hash");
            let password = body.password.clone();
            let matches = permit
                .run(move || tenancy_core::password::verify_password(&hash, &password))
                .await
                .map_err(|error| RouterError::Internal(anyhow::Error::new(error)))?;
            let active: bool = row.get("is_active");
            (matches && active).then(|| row.get::<_, UserId>("id"))
        }
        None => {
            state.auth.hashes.pretend().await;
            drop(permit);
            None
        }
    };
    let user = user.ok_or_else(invalid_credentials)?;

    let mut connection = pool.connection(&state.pools).await?;
    let transaction = connection.client.transaction().await?;
    lockout::clear(&*transaction, &email).await?;
    let origin_of_session = sessions::Origin {
        client_ip: origin.client_ip,
        user_agent: origin.user_agent.clone(),
    };
    let started = sessions::start(
        &*transaction,
        entry.id,
        user,
        &origin_of_session,
        state.auth.refresh_ttl,
    )
    .await?
    .ok_or_else(invalid_credentials)?;
    origin
        .as_user(user)
        .commit(
            transaction,
            Change::new("auth.login", "session", started.session).after(json!({ "user_id": user })),
        )
        .await?;
    tokens(
        &state,
        entry.id,
        user,
        started.session,
        started.refresh_token,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Rotates a refresh token: the presented one is used up, a new one comes back with a new
/// access token. A used token presented again after the grace window revokes its session.
async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    origin: Origin,
    Json(body): Json<RefreshRequest>,
) -> RouterResult<Json<Tokens>> {
    let presented =
        secrets::parse(Kind::Refresh, &body.refresh_token).ok_or_else(invalid_refresh_token)?;
    let (entry, pool) = admit(&state, presented.tenant).await?;
    if let Some(named) = named_tenant(&headers, state.auth.base_domain.as_deref())?
        && named != entry.slug
    {
        return Err(RouterError::TenantMismatch);
    }
    let mut connection = pool.connection(&state.pools).await?;
    let transaction = connection.client.transaction().await?;
    let outcome = sessions::refresh(
        &*transaction,
        &presented,
        state.auth.refresh_ttl,
        state.auth.refresh_grace,
    )
    .await?;
    match outcome {
        Refreshed::Rotated {
            user,
            session,
            refresh_token,
        } => {
            transaction.commit().await?;
            tokens(&state, entry.id, user, session, refresh_token)
        }
        Refreshed::Invalid => Err(invalid_refresh_token()),
        Refreshed::Reused { user, session } => {
            origin
                .as_user(user)
                .commit(
                    transaction,
                    Change::new("auth.refresh_reused", "session", session)
                        .after(json!({ "revoked": true })),
                )
                .await?;
            Err(RouterError::Unauthorized {
                code: "refresh_token_reused",
                detail:
                    "this refresh token was already used; its session is revoked, sign in again"
                        .to_owned(),
            })
        }
    }
}

pub(super) fn not_a_user() -> RouterError {
    RouterError::BadRequest("this route is for signed-in users, not service tokens".to_owned())
}

/// Ends the caller's session: its refresh tokens and access tokens stop working.
async fn logout(tenant: Tenant) -> RouterResult<StatusCode> {
    let (user, session) = tenant.user().ok_or_else(not_a_user)?;
    let mut connection = tenant.signed_in().await?;
    let transaction = connection.client.transaction().await?;
    sessions::revoke(&*transaction, session, "logout").await?;
    sessions::prune(&*transaction).await?;
    tenant
        .audit()
        .commit(
            transaction,
            Change::new("auth.logout", "session", session).after(json!({ "user_id": user })),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Me {
    User {
        user: User,
        permissions: Vec<String>,
    },
    Service {
        subject: String,
        permissions: Vec<String>,
    },
}

/// Who the caller is: the user with its roles and effective permissions (or the service
/// token's subject and scopes).
async fn me(tenant: Tenant) -> RouterResult<Json<Me>> {
    match &tenant.principal {
        Principal::Service { subject, scopes } => Ok(Json(Me::Service {
            subject: subject.to_string(),
            permissions: scopes.to_vec(),
        })),
        Principal::User { id, .. } => {
            let connection = tenant.signed_in().await?;
            let (user, permissions) = users::load_with_permissions(&connection.client, *id)
                .await?
                .ok_or_else(users::not_found)?;
            Ok(Json(Me::User { user, permissions }))
        }
    }
}
