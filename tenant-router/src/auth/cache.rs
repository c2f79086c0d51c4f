//! Verified tokens, remembered: a request with a token seen before skips the signature
//! check (an Ed25519 verification and the JSON of the claims).
//!
//! - Keyed by the SHA-256 of the whole token: a different token, however similar, is a
//!   different key, and no token is kept in memory.
//! - An entry is served only before the token's `exp` (the verifier's clock-skew leeway is
//!   not extended to the cache: past `exp` the token goes through the verifier again).
//! - Bounded: at most `capacity` tokens, the least recently used forgotten first.
//! - Only *who* the token names is cached. Whether the tenant may be served (status,
//!   plan) still comes from the directory on every request, and a user's session is still
//!   checked in the tenant database: a suspended or deleted tenant, or a signed-out user,
//!   is refused at once whatever the cache holds.

use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tenancy_core::TenantId;

use crate::extract::Principal;

struct Entry {
    tenant: TenantId,
    principal: Principal,
    /// The token's `exp` (Unix seconds).
    expires_at: i64,
}

pub struct TokenCache {
    entries: Mutex<LruCache<[u8; 32], Entry>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenCache")
            .field("tokens", &self.len())
            .finish()
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Who a token seen before names, if it has not expired.
    pub fn get(&self, token: &str) -> Option<(TenantId, Principal)> {
        let key = Self::key(token);
        let now = chrono::Utc::now().timestamp();
        let mut entries = self.entries.lock();
        match entries.get(&key) {
            Some(entry) if now < entry.expires_at => Some((entry.tenant, entry.principal.clone())),
            Some(_) => {
                entries.pop(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a token the verifier accepted, until its `exp`.
    pub fn insert(&self, token: &str, tenant: TenantId, principal: Principal, expires_at: i64) {
        if expires_at <= chrono::Utc::now().timestamp() {
            return;
        }
        self.entries.lock().put(
            Self::key(token),
            Entry {
                tenant,
                principal,
                expires_at,
            },
        );
    }

    /// Tokens remembered now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Principal {
        Principal::Service {
            subject: "service:test".into(),
            scopes: vec!["customers.read".to_owned()].into(),
        }
    }

    #[test]
    fn serves_only_before_exp_and_forgets_the_least_recent() {
        let cache = TokenCache::new(2);
        let now = chrono::Utc::now().timestamp();
        let tenant = TenantId::new();
        cache.insert("a", tenant, service(), now + 60);
        cache.insert("expired", tenant, service(), now - 1);
        cache.insert("ends-now", tenant, service(), now);
        assert_eq!(cache.len(), 1, "expired tokens are not kept");
        assert!(cache.get("a").is_some_and(|(id, _)| id == tenant));
        assert!(cache.get("b").is_none());
        cache.insert("b", tenant, service(), now + 60);
        cache.insert("c", tenant, service(), now + 60);
        assert_eq!(cache.len(), 2, "bounded");
        assert!(
            cache.get("a").is_none(),
            "the least recently used went first"
        );
        assert!(cache.get("c").is_some());
    }
}
