//! Super-admin tokens: what they claim, and how they are minted.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tenancy_core::AdminId;
use tenancy_core::token::{KeyError, TokenKey, TokenVerifier};

/// The `aud` of super-admin tokens. Tenant tokens carry another audience, so neither kind
/// is accepted where the other is expected.
pub const ADMIN_AUDIENCE: &str = "tenancy-admin";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminClaims {
    pub sub: AdminId,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: uuid::Uuid,
}

/// Signs and verifies super-admin tokens.
#[derive(Debug)]
pub struct AdminAuth {
    key: TokenKey,
    issuer: String,
    pub ttl: Duration,
    pub verifier: TokenVerifier,
}

impl AdminAuth {
    pub fn new(key: TokenKey, issuer: String, ttl: Duration) -> Self {
        let verifier = TokenVerifier::new([&key], &issuer, ADMIN_AUDIENCE);
        Self {
            key,
            issuer,
            ttl,
            verifier,
        }
    }

    /// The `iss` of every token this control plane signs.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key, PEM-encoded, that verifies what this control plane signs.
    pub fn public_key_pem(&self) -> &str {
        self.key.public_pem()
    }

    /// Signs other claims (tenant service tokens) with the same key.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        self.key.sign(claims)
    }

    pub fn mint(&self, admin: AdminId) -> Result<String, KeyError> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(3600);
        self.key.sign(&AdminClaims {
            sub: admin,
            iss: self.issuer.clone(),
            aud: ADMIN_AUDIENCE.to_owned(),
            iat: now,
            exp: now + ttl,
            jti: uuid::Uuid::new_v4(),
        })
    }
}
