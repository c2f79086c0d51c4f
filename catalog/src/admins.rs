//! Super-admins of the control plane, and the brute-force lock on their logins.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use tenancy_core::{AdminId, Email};

/// Failed logins within [`FAILURE_WINDOW_MINUTES`] that lock an account.
pub const MAX_FAILED_LOGINS: i32 = 5;
pub const FAILURE_WINDOW_MINUTES: i32 = 5;
pub const LOCK_MINUTES: i32 = 5;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Admin {
    pub id: uuid::Uuid,
    pub email: String,
    pub password_hash: String,
    pub disabled_at: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl Admin {
    pub fn id(&self) -> AdminId {
        AdminId::from_uuid(self.id)
    }
}

/// Inserts an admin. A taken e-mail fails on the `admin_users_email_key` constraint.
pub async fn create(
    executor: impl PgExecutor<'_>,
    email: &Email,
    password_hash: &str,
) -> Result<AdminId, sqlx::Error> {
    let id = AdminId::new();
    sqlx::query("INSERT INTO admin_users (id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(email.as_str())
        .bind(password_hash)
        .execute(executor)
        .await?;
    Ok(id)
}

pub async fn find_by_email(pool: &PgPool, email: &Email) -> Result<Option<Admin>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, email, password_hash, disabled_at, locked_until \
         FROM admin_users WHERE email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await
}

/// The e-mail of an admin who may act now (exists and is not disabled).
pub async fn active_email(pool: &PgPool, id: AdminId) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM admin_users WHERE id = $1 AND disabled_at IS NULL")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Claims one login attempt for an account before its password is checked: the attempt
/// counts as a failure until [`record_login`] clears the count, and the attempt that
/// reaches the limit locks the account. `None` when the account is locked (no attempt
/// left). One statement: of N concurrent attempts at most the limit get through.
pub async fn claim_login_attempt(pool: &PgPool, id: AdminId) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE admin_users SET \
           failed_logins = CASE WHEN first_failed_at > now() - make_interval(mins => $2) \
                                THEN failed_logins + 1 ELSE 1 END, \
           first_failed_at = CASE WHEN first_failed_at > now() - make_interval(mins => $2) \
                                THEN first_failed_at ELSE now() END, \
           locked_until = CASE WHEN first_failed_at > now() - make_interval(mins => $2) \
                                AND failed_logins + 1 >= $3 \
                               THEN now() + make_interval(mins => $4) ELSE locked_until END \
         WHERE id = $1 AND (locked_until IS NULL OR locked_until <= now()) \
           AND NOT (first_failed_at > now() - make_interval(mins => $2) AND failed_logins >= $3) \
         RETURNING failed_logins",
    )
    .bind(id)
    .bind(FAILURE_WINDOW_MINUTES)
    .bind(MAX_FAILED_LOGINS)
    .bind(LOCK_MINUTES)
    .fetch_optional(pool)
    .await
}

/// Clears the failure count and notes the login.
pub async fn record_login(pool: &PgPool, id: AdminId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE admin_users SET failed_logins = 0, first_failed_at = NULL, locked_until = NULL, \
         last_login_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
