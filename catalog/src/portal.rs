//! The super-admins' portal sessions: a random token in the browser's cookie, its SHA-256
//! here, with the session's CSRF token. A session is valid while unexpired and its admin
//! is not disabled.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tenancy_core::AdminId;

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub admin_id: AdminId,
    pub email: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session for `ttl_seconds`; also forgets up to 100 expired ones.
pub async fn create(
    pool: &PgPool,
    token_hash: &[u8; 32],
    admin: AdminId,
    csrf_token: &str,
    ttl_seconds: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM portal_sessions WHERE token_hash IN (SELECT token_hash FROM portal_sessions \
           WHERE expires_at < now() LIMIT 100 FOR UPDATE SKIP LOCKED)",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO portal_sessions (token_hash, admin_id, csrf_token, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(token_hash.as_slice())
    .bind(admin)
    .bind(csrf_token)
    .bind(ttl_seconds as f64)
    .execute(pool)
    .await?;
    Ok(())
}

/// The session of a token, when it is unexpired and its admin may act.
pub async fn find(pool: &PgPool, token_hash: &[u8; 32]) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<(uuid::Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.admin_id, a.email, s.csrf_token, s.expires_at \
         FROM portal_sessions s JOIN admin_users a ON a.id = s.admin_id \
         WHERE s.token_hash = $1 AND s.expires_at > now() AND a.disabled_at IS NULL",
    )
    .bind(token_hash.as_slice())
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(admin_id, email, csrf_token, expires_at)| Session {
            admin_id: AdminId::from_uuid(admin_id),
            email,
            csrf_token,
            expires_at,
        }),
    )
}

/// Ends a session (signing out).
pub async fn delete(pool: &PgPool, token_hash: &[u8; 32]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM portal_sessions WHERE token_hash = $1")
        .bind(token_hash.as_slice())
        .execute(pool)
        .await?;
    Ok(())
}
