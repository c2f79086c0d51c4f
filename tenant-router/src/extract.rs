//! Extractors: the tenant and principal of a request (from a verified token, with the
//! tenant's pool), and JSON bodies and query strings whose rejections are problem
//! documents.
//!
//! Two kinds of bearer token reach the router: service tokens the control plane mints
//! (their permissions are their scopes) and user tokens the router itself issues at
//! sign-in (their permissions are read from the tenant's database on every request, with
//! the session and the user's status, so a change applies to the very next request).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, header, request::Parts};
use catalog::tenants::Status;
use tenancy_core::TenantId;
use tenancy_core::claims::TenantClaims;
use tenancy_core::token::TokenError;

use crate::audit::{AuditContext, clip_user_agent};
use crate::error::{RouterError, RouterResult};
use crate::ids::{SessionId, UserId};
use crate::pools::{Connection, TenantPool};
use crate::state::AppState;
use crate::tenant::TenantEntry;

/// Who a request acts as.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A tenant app with a service token: its scopes are its permissions.
    /// Shared, not copied: a cached token hands them to every request that shows it.
    Service {
        subject: Arc<str>,
        scopes: Arc<[String]>,
    },
    /// A signed-in user of the tenant, in one session.
    User { id: UserId, session: SessionId },
}

/// The tenant a request acts for: who acts, the directory entry, and its pool. Handlers
/// never look a tenant up themselves.
pub struct Tenant {
    pub principal: Principal,
    pub entry: Arc<TenantEntry>,
    pool: Arc<TenantPool>,
    audit: AuditContext,
    state: AppState,
}

impl Tenant {
    /// Tells the catalog (at the next usage flush) how many users the tenant has now.
    pub fn users_changed(&self, users: i64) {
        self.state.usage.record_users(self.entry.id, users);
    }

    /// A connection for a request that needs `permission`; refused (403 naming it) when
    /// the principal lacks it, and (401) when a user's session has ended or the user was
    /// disabled.
    pub async fn access(&self, permission: &'static str) -> RouterResult<Connection> {
        self.checked(Some(permission)).await
    }

    /// Like [`Tenant::access`], for writes: also refused while the tenant is over its
    /// storage limit.
    pub async fn access_write(&self, permission: &'static str) -> RouterResult<Connection> {
        if self.entry.storage_exceeded {
            // The permission is checked first: a principal without it learns nothing.
            drop(self.checked(Some(permission)).await?);
            return Err(RouterError::StorageLimitExceeded);
        }
        self.checked(Some(permission)).await
    }

    /// A connection for a request any signed-in principal may make (its own session).
    pub async fn signed_in(&self) -> RouterResult<Connection> {
        self.checked(None).await
    }

    async fn checked(&self, permission: Option<&'static str>) -> RouterResult<Connection> {
        match &self.principal {
            Principal::Service { scopes, .. } => {
                if let Some(permission) = permission
                    && !scopes.iter().any(|scope| scope == permission)
                {
                    return Err(RouterError::Forbidden(permission));
                }
                self.pool.connection(&self.state.pools).await
            }
            Principal::User { id, session } => {
                let connection = self.pool.connection(&self.state.pools).await?;
                let statement = connection
                    .client
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM user_roles ur \
                           JOIN role_permissions rp ON rp.role_id = ur.role_id \
                           WHERE ur.user_id = u.id AND rp.permission = $3) \
                         FROM users u JOIN sessions s ON s.user_id = u.id \
                         WHERE u.id = $1 AND s.id = $2 AND u.is_active AND s.revoked_at IS NULL",
                    )
                    .await?;
                let row = connection
                    .client
                    .query_opt(&statement, &[id, session, &permission])
                    .await?
                    .ok_or_else(|| RouterError::Unauthorized {
                        code: "session_ended",
                        detail: "the session has ended (signed out, revoked, or the user was disabled or deleted); sign in again".to_owned(),
                    })?;
                match permission {
                    Some(permission) if !row.get::<_, bool>(0) => {
                        Err(RouterError::Forbidden(permission))
                    }
                    _ => Ok(connection),
                }
            }
        }
    }

    /// Who acts and from where, for the audit log.
    pub fn audit(&self) -> &AuditContext {
        &self.audit
    }

    /// The signed-in user and session, for a user token.
    pub fn user(&self) -> Option<(UserId, SessionId)> {
        match self.principal {
            Principal::User { id, session } => Some((id, session)),
            Principal::Service { .. } => None,
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = RouterError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION);
        let token =
            tenancy_core::bearer::token(header.map(|value| value.as_bytes())).map_err(|error| {
                match error {
                    tenancy_core::bearer::BearerError::Missing => RouterError::MissingToken,
                    tenancy_core::bearer::BearerError::Malformed => RouterError::InvalidToken(
                        "the Authorization header must be `Bearer <token>`".to_owned(),
                    ),
                }
            })?;
        let (tenant, principal) = match state.auth.token_cache.get(token) {
            Some(known) => {
                state.metrics.token_cache("hit");
                known
            }
            None => {
                state.metrics.token_cache("miss");
                verify(state, token)?
            }
        };
        let (entry, pool) = admit(state, tenant).await?;
        if let Some(named) = named_tenant(&parts.headers, state.auth.base_domain.as_deref())?
            && named != entry.slug
        {
            return Err(RouterError::TenantMismatch);
        }
        let audit = AuditContext {
            actor: match &principal {
                Principal::Service { subject, .. } => subject.to_string(),
                Principal::User { id, .. } => format!("user:{id}"),
            },
            actor_id: match &principal {
                Principal::User { id, .. } => Some(*id),
                Principal::Service { .. } => None,
            },
            request_id: request_id(&parts.headers),
            client_ip: client_ip(parts),
            user_agent: user_agent(&parts.headers),
        };
        Ok(Self {
            principal,
            entry,
            pool,
            audit,
            state: state.clone(),
        })
    }
}

/// Checks a token's signature and claims (a router key's user token, else a control
/// plane key's service token); remembers who it names until its `exp`.
fn verify(state: &AppState, token: &str) -> RouterResult<(TenantId, Principal)> {
    let (tenant, principal, expires_at) = match state.auth.tokens.verify(token) {
        Ok(claims) => (
            claims.tenant,
            Principal::User {
                id: claims.sub,
                session: claims.sid,
            },
            claims.exp,
        ),
        // Not signed by a router key: it may be a service token.
        Err(TokenError::UnknownKey) => {
            let claims: TenantClaims = state
                .verifier
                .verify(token)
                .map_err(|error| RouterError::InvalidToken(error.to_string()))?;
            (
                claims.tenant,
                Principal::Service {
                    subject: claims.sub.into(),
                    scopes: claims.scopes.into(),
                },
                claims.exp,
            )
        }
        Err(error) => return Err(RouterError::InvalidToken(error.to_string())),
    };
    state
        .auth
        .token_cache
        .insert(token, tenant, principal.clone(), expires_at);
    Ok((tenant, principal))
}

/// Lets a request for `tenant` through: the tenant exists and is active, and the request
/// is within the plan's rate. Counts it, and gives the tenant's pool.
pub async fn admit(
    state: &AppState,
    tenant: TenantId,
) -> RouterResult<(Arc<TenantEntry>, Arc<TenantPool>)> {
    let entry =
        state.directory.get(tenant).await?.ok_or_else(|| {
            RouterError::InvalidToken("the token's tenant does not exist".to_owned())
        })?;
    check_status(&entry)?;
    tracing::Span::current().record("tenant_id", tracing::field::display(entry.id));
    state
        .limiter
        .take(entry.id, entry.requests_per_minute)
        .map_err(|retry_after| RouterError::RateLimited { retry_after })?;
    state.usage.record(entry.id);
    let pool = state.pools.pool_for(&entry)?;
    Ok((entry, pool))
}

/// The tenant's pool for the router's own work on its behalf (the events listener): the
/// tenant must be active; no rate limit, not counted as a request.
pub async fn admit_quietly(state: &AppState, tenant: TenantId) -> RouterResult<Arc<TenantPool>> {
    let entry = state
        .directory
        .get(tenant)
        .await?
        .ok_or_else(|| RouterError::InvalidToken("the tenant does not exist".to_owned()))?;
    check_status(&entry)?;
    state.pools.pool_for(&entry)
}

fn check_status(entry: &TenantEntry) -> RouterResult<()> {
    match entry.status {
        Status::Active => {}
        Status::Suspended => return Err(RouterError::TenantSuspended),
        Status::Restoring => return Err(RouterError::TenantRestoring),
        Status::Deleting | Status::Deleted => {
            return Err(RouterError::InvalidToken(
                "the token's tenant was deleted".to_owned(),
            ));
        }
        Status::Provisioning | Status::Failed => return Err(RouterError::TenantNotReady),
    }
    if entry.migrating {
        return Err(RouterError::TenantMigrating);
    }
    Ok(())
}

/// The tenant a request names: `X-Tenant`, else the first label of a host under the base
/// domain. A malformed name is a 400.
pub fn named_tenant(
    headers: &HeaderMap,
    base_domain: Option<&str>,
) -> RouterResult<Option<String>> {
    if let Some(value) = headers.get("x-tenant") {
        let slug = value
            .to_str()
            .ok()
            .and_then(|text| text.parse::<tenancy_core::Slug>().ok())
            .ok_or_else(|| RouterError::BadRequest("`X-Tenant` is not a tenant slug".to_owned()))?;
        return Ok(Some(slug.as_str().to_owned()));
    }
    let (Some(domain), Some(host)) = (base_domain, headers.get(header::HOST)) else {
        return Ok(None);
    };
    let host = host.to_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.rsplit_once(':').map_or(host.as_str(), |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name
        } else {
            host.as_str()
        }
    });
    let Some(label) = host
        .strip_suffix(domain.trim_start_matches('.'))
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return Ok(None);
    };
    if label.contains('.') {
        return Ok(None);
    }
    label
        .parse::<tenancy_core::Slug>()
        .map(|slug| Some(slug.as_str().to_owned()))
        .map_err(|_| RouterError::BadRequest("the host does not name a tenant".to_owned()))
}

/// Where a request came from: its id, the peer's address, the user agent. For routes that
/// have no token yet (sign-in, refresh).
#[derive(Debug, Clone)]
pub struct Origin {
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Origin {
    /// The audit context of `user` acting from here.
    pub fn as_user(&self, user: UserId) -> AuditContext {
        AuditContext {
            actor: format!("user:{user}"),
            actor_id: Some(user),
            request_id: self.request_id.clone(),
            client_ip: self.client_ip,
            user_agent: self.user_agent.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            request_id: request_id(&parts.headers),
            client_ip: client_ip(parts),
            user_agent: user_agent(&parts.headers),
        })
    }
}

pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(|id| id.chars().take(100).collect())
}

pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(clip_user_agent)
}

/// The peer's address, as the listener saw it.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

pub use tenancy_http::{Json, Query};

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn the_tenant_is_named_by_header_or_by_host() {
        let named = |pairs, domain| named_tenant(&headers(pairs), domain).ok().flatten();
        assert_eq!(
            named(&[("x-tenant", "acme")], None),
            Some("acme".to_owned())
        );
        assert_eq!(
            named(&[("host", "acme.example.com:8081")], Some("example.com")),
            Some("acme".to_owned())
        );
        assert_eq!(named(&[("host", "acme.example.com")], None), None);
        assert_eq!(
            named(&[("host", "a.b.example.com")], Some("example.com")),
            None
        );
        assert_eq!(named(&[("host", "example.com")], Some("example.com")), None);
        assert!(named_tenant(&headers(&[("x-tenant", "NOT A SLUG")]), None).is_err());
    }
}
