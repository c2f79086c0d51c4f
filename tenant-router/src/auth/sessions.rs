//! Sessions and their rotating refresh tokens, in the tenant's database.
//!
//! A session is one sign-in. Its refresh tokens form a family: each is used once, and using
//! it issues its child. A used token presented again within the grace window (a client
//! retrying a response it lost) gets a sibling; later, it means the token was copied, and
//! the whole session is revoked: the thief's tokens and the owner's newest one alike.

use std::net::IpAddr;
use std::time::Duration;

use tenancy_core::TenantId;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::secrets::{self, Kind, Presented};
use crate::ids::{SessionId, UserId};

/// Where a sign-in came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// A new session's ids and its first refresh token.
#[derive(Debug)]
pub struct Started {
    pub session: SessionId,
    pub refresh_token: String,
}

/// Starts a session for an active user; `None` when the user is gone or disabled.
pub async fn start(
    client: &impl GenericClient,
    tenant: TenantId,
    user: UserId,
    origin: &Origin,
    refresh_ttl: Duration,
) -> Result<Option<Started>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "INSERT INTO sessions (user_id, client_ip, user_agent) \
             SELECT id, $2, $3 FROM users WHERE id = $1 AND is_active RETURNING id",
            &[&user, &origin.client_ip, &origin.user_agent],
        )
        .await?
    else {
        return Ok(None);
    };
    let session: SessionId = row.get(0);
    let refresh_token = issue(client, tenant, session, None, refresh_ttl).await?;
    client
        .execute(
            "UPDATE users SET last_login_at = now() WHERE id = $1",
            &[&user],
        )
        .await?;
    Ok(Some(Started {
        session,
        refresh_token,
    }))
}

async fn issue(
    client: &impl GenericClient,
    tenant: TenantId,
    session: SessionId,
    parent: Option<Uuid>,
    ttl: Duration,
) -> Result<String, tokio_postgres::Error> {
    let (text, hash) = secrets::mint(Kind::Refresh, tenant);
    client
        .execute(
            "INSERT INTO refresh_tokens (session_id, parent_id, token_hash, expires_at) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            &[&session, &parent, &hash.as_slice(), &ttl.as_secs_f64()],
        )
        .await?;
    Ok(text)
}

/// What presenting a refresh token came to.
#[derive(Debug)]
pub enum Refreshed {
    /// A new refresh token for the session.
    Rotated {
        user: UserId,
        session: SessionId,
        refresh_token: String,
    },
    /// No such token, expired, or its session or user has ended.
    Invalid,
    /// A rotated token presented again after the grace window: the session is revoked.
    Reused { user: UserId, session: SessionId },
}

/// Presents a refresh token. Run it in a transaction: the session row is locked, so the
/// refreshes of one session happen one at a time.
pub async fn refresh(
    client: &impl GenericClient,
    presented: &Presented,
    ttl: Duration,
    grace: Duration,
) -> Result<Refreshed, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "SELECT t.id, t.session_id, s.user_id, \
                    t.expires_at > now() AND s.revoked_at IS NULL AND u.is_active AS live, \
                    t.used_at IS NOT NULL AS used, \
                    t.used_at > now() - make_interval(secs => $2) AS within_grace \
             FROM refresh_tokens t \
             JOIN sessions s ON s.id = t.session_id \
             JOIN users u ON u.id = s.user_id \
             WHERE t.token_hash = $1 \
             FOR UPDATE OF s, t",
            &[&presented.hash.as_slice(), &grace.as_secs_f64()],
        )
        .await?
    else {
        return Ok(Refreshed::Invalid);
    };
    let token: Uuid = row.get("id");
    let session: SessionId = row.get("session_id");
    let user: UserId = row.get("user_id");
    if !row.get::<_, bool>("live") {
        return Ok(Refreshed::Invalid);
    }
    let used: bool = row.get("used");
    let within_grace: Option<bool> = row.get("within_grace");
    if used && within_grace != Some(true) {
        revoke(client, session, "refresh_token_reused").await?;
        return Ok(Refreshed::Reused { user, session });
    }
    if !used {
        client
            .execute(
                "UPDATE refresh_tokens SET used_at = now() WHERE id = $1",
                &[&token],
            )
            .await?;
    }
    let refresh_token = issue(client, presented.tenant, session, Some(token), ttl).await?;
    Ok(Refreshed::Rotated {
        user,
        session,
        refresh_token,
    })
}

/// Ends a session: its refresh tokens stop working, and so do its access tokens (every
/// request checks the session). Returns whether it was live.
pub async fn revoke(
    client: &impl GenericClient,
    session: SessionId,
    reason: &str,
) -> Result<bool, tokio_postgres::Error> {
    let revoked = client
        .execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 \
             WHERE id = $1 AND revoked_at IS NULL",
            &[&session, &reason],
        )
        .await?;
    Ok(revoked > 0)
}

/// Rows pruned at most per call, so that a sign-in never carries a long delete.
const PRUNE_AT_ONCE: i64 = 200;

/// Forgets what can no longer be used: refresh tokens past their expiry (a used one is kept
/// until then, to recognise its reuse), and sessions revoked a day ago or left with no
/// unexpired token. Returns the rows removed.
pub async fn prune(client: &impl GenericClient) -> Result<u64, tokio_postgres::Error> {
    let tokens = client
        .execute(
            "DELETE FROM refresh_tokens WHERE id IN \
               (SELECT id FROM refresh_tokens WHERE expires_at < now() LIMIT $1)",
            &[&PRUNE_AT_ONCE],
        )
        .await?;
    let sessions = client
        .execute(
            "DELETE FROM sessions WHERE id IN \
               (SELECT s.id FROM sessions s \
                WHERE s.revoked_at < now() - interval '1 day' \
                   OR (s.created_at < now() - interval '1 day' AND NOT EXISTS \
                        (SELECT 1 FROM refresh_tokens t WHERE t.session_id = s.id)) \
                LIMIT $1)",
            &[&PRUNE_AT_ONCE],
        )
        .await?;
    Ok(tokens + sessions)
}

/// Ends every live session of a user (disabled or deleted).
pub async fn revoke_all(
    client: &impl GenericClient,
    user: UserId,
    reason: &str,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 \
             WHERE user_id = $1 AND revoked_at IS NULL",
            &[&user, &reason],
        )
        .await
}
