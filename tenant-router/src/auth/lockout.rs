//! Brute-force lockout, counted per e-mail in the tenant's database whether an account has
//! that e-mail or not (so an unknown e-mail behaves exactly like a known one).
//!
//! Every attempt first takes a slot, atomically, before its password is checked: within a
//! window at most `max_failures` attempts are ever checked, however many arrive at once.
//! The attempt that takes the last slot locks the e-mail; a correct password clears it.

use std::time::Duration;

use tokio_postgres::GenericClient;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
}

/// Whether an attempt may check its password.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attempt {
    Allowed,
    Locked { retry_after: Duration },
}

/// Takes a slot for an attempt on `email`.
pub async fn reserve(
    client: &impl GenericClient,
    email: &str,
    policy: &Policy,
) -> Result<Attempt, tokio_postgres::Error> {
    let max = i32::try_from(policy.max_failures).unwrap_or(i32::MAX);
    let window = policy.window.as_secs_f64();
    let lockout = policy.lockout.as_secs_f64();
    // A window that has passed, or a lock that has expired, starts the count again.
    let taken = client
        .query_opt(
            "INSERT INTO login_failures AS f (email, failures, window_start, locked_until) \
             VALUES ($1, 1, now(), CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $4) END) \
             ON CONFLICT (email) DO UPDATE SET \
               failures = CASE WHEN f.window_start <= now() - make_interval(secs => $3) \
                                 OR f.locked_until <= now() THEN 1 ELSE f.failures + 1 END, \
               window_start = CASE WHEN f.window_start <= now() - make_interval(secs => $3) \
                                     OR f.locked_until <= now() THEN now() ELSE f.window_start END, \
               locked_until = CASE WHEN (CASE WHEN f.window_start <= now() - make_interval(secs => $3) \
                                                OR f.locked_until <= now() THEN 1 ELSE f.failures + 1 END) >= $2 \
                                   THEN now() + make_interval(secs => $4) END \
             WHERE f.locked_until IS NULL OR f.locked_until <= now() \
             RETURNING failures",
            &[&email, &max, &window, &lockout],
        )
        .await?;
    if taken.is_some() {
        return Ok(Attempt::Allowed);
    }
    let row = client
        .query_opt(
            "SELECT extract(epoch FROM locked_until - now())::float8 FROM login_failures \
             WHERE email = $1 AND locked_until > now()",
            &[&email],
        )
        .await?;
    let seconds: f64 = row.map_or(1.0, |row| row.get(0));
    Ok(Attempt::Locked {
        retry_after: Duration::from_secs_f64(seconds.max(1.0).ceil()),
    })
}

/// A correct password: the e-mail's count starts again.
pub async fn clear(client: &impl GenericClient, email: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute("DELETE FROM login_failures WHERE email = $1", &[&email])
        .await?;
    Ok(())
}

/// Forgets counts whose window and lock have both passed (the table stays as small as the
/// last few minutes of failures).
pub async fn forget_stale(
    client: &impl GenericClient,
    policy: &Policy,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM login_failures \
             WHERE window_start < now() - make_interval(secs => $1) \
               AND (locked_until IS NULL OR locked_until < now())",
            &[&policy.window.as_secs_f64()],
        )
        .await
}
