//! A tenant's own users: the router's user tokens, opaque secrets (refresh tokens, event
//! tickets), sign-in with brute-force lockout, and sessions with rotating refresh tokens.
//! Everything a user is lives in the tenant's own database, read and written as the
//! tenant's role.

pub mod cache;
pub mod lockout;
pub mod secrets;
pub mod sessions;
mod tokens;

pub use tokens::{USER_AUDIENCE, UserClaims, UserTokens};

use std::time::Duration;

use tenancy_core::hash_gate::HashGate;

/// What sign-in and the token extractor need, built once from the configuration.
#[derive(Debug)]
pub struct AuthState {
    pub tokens: UserTokens,
    /// Tokens verified before (service and user tokens alike).
    pub token_cache: cache::TokenCache,
    /// Bounds the argon2 checks in flight.
    pub hashes: HashGate,
    pub lockout: lockout::Policy,
    pub refresh_ttl: Duration,
    pub refresh_grace: Duration,
    pub base_domain: Option<String>,
    /// The signing key's PEM, from which other router secrets (list cursors) derive.
    pub cursor_secret: secrecy::SecretString,
}

impl AuthState {
    pub fn from_config(args: &crate::config::AuthArgs) -> anyhow::Result<Self> {
        use anyhow::Context;
        let keys = args.signing_keys()?;
        let cursor_secret = keys
            .first()
            .cloned()
            .ok_or(crate::config::ConfigError::NoSigningKeys)?;
        let tokens = UserTokens::new(&keys, &args.issuer, args.access_token_ttl)
            .context("load the user-token signing keys (TENANCY_ROUTER_SIGNING_KEYS)")?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            tokens,
            token_cache: cache::TokenCache::new(args.token_cache_capacity),
            hashes: HashGate::new(
                args.password_checks.unwrap_or(cores),
                64,
                Duration::from_secs(5),
            ),
            lockout: lockout::Policy {
                max_failures: args.login_max_failures,
                window: args.login_window,
                lockout: args.login_lockout,
            },
            refresh_ttl: args.refresh_token_ttl,
            refresh_grace: args.refresh_reuse_grace,
            base_domain: args
                .base_domain
                .as_deref()
                .map(|domain| domain.trim_matches('.').to_ascii_lowercase()),
            cursor_secret,
        })
    }
}
