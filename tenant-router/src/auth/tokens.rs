//! User access tokens: JWTs the router signs with its own Ed25519 key set, for an audience
//! no other token carries. They name the tenant, the user and the session; they carry no
//! permissions (those are read from the tenant's database on every request, so a change
//! applies to the very next one).

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tenancy_core::TenantId;
use tenancy_core::token::{KeyError, TokenError, TokenKey, TokenVerifier};
use uuid::Uuid;

use crate::ids::{SessionId, UserId};

/// The `aud` of user tokens (service tokens and admin tokens carry others).
pub const USER_AUDIENCE: &str = "tenancy-user";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    /// The user's id.
    pub sub: UserId,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub tenant: TenantId,
    /// The session (sign-in) the token belongs to.
    pub sid: SessionId,
}

/// Signs and verifies user tokens.
pub struct UserTokens {
    signer: TokenKey,
    verifier: TokenVerifier,
    issuer: String,
    ttl: Duration,
}

impl std::fmt::Debug for UserTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UserTokens")
            .field("signer", &self.signer.kid())
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl UserTokens {
    /// The first key signs; all are accepted.
    pub fn new(pems: &[SecretString], issuer: &str, ttl: Duration) -> Result<Self, KeyError> {
        let keys = pems
            .iter()
            .map(TokenKey::from_pem)
            .collect::<Result<Vec<_>, _>>()?;
        let verifier = TokenVerifier::new(&keys, issuer, USER_AUDIENCE);
        let signer = keys.into_iter().next().ok_or(KeyError::NotEd25519Pem)?;
        Ok(Self {
            signer,
            verifier,
            issuer: issuer.to_owned(),
            ttl,
        })
    }

    /// A signed access token, and its lifetime in seconds.
    pub fn issue(
        &self,
        tenant: TenantId,
        user: UserId,
        session: SessionId,
    ) -> Result<(String, u64), KeyError> {
        let now = chrono::Utc::now().timestamp();
        let ttl = self.ttl.as_secs();
        let claims = UserClaims {
            sub: user,
            iss: self.issuer.clone(),
            aud: USER_AUDIENCE.to_owned(),
            iat: now,
            exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            jti: Uuid::new_v4(),
            tenant,
            sid: session,
        };
        Ok((self.signer.sign(&claims)?, ttl))
    }

    /// The claims of a user token; [`TokenError::UnknownKey`] for a token signed by a key
    /// not in this set (a service token, say).
    pub fn verify(&self, token: &str) -> Result<UserClaims, TokenError> {
        self.verifier.verify(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn user() -> UserId {
        UserId::from_uuid(Uuid::new_v4())
    }

    fn session() -> SessionId {
        SessionId::from_uuid(Uuid::new_v4())
    }

    fn keys() -> (SecretString, SecretString) {
        let (_, first) = TokenKey::generate().expect("key");
        let (_, second) = TokenKey::generate().expect("key");
        (first, second)
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let (first, second) = keys();
        let tenant = TenantId::from_uuid(Uuid::new_v4());
        let old = UserTokens::new(
            std::slice::from_ref(&first),
            "router",
            Duration::from_secs(60),
        )
        .expect("tokens");
        let rotated =
            UserTokens::new(&[second, first], "router", Duration::from_secs(60)).expect("tokens");
        let (token, ttl) = old.issue(tenant, user(), session()).expect("issue");
        assert_eq!(ttl, 60);
        let claims = rotated
            .verify(&token)
            .expect("an old key's token still verifies");
        assert_eq!(claims.tenant, tenant);
        assert_eq!(claims.aud, USER_AUDIENCE);
        let (newer, _) = rotated.issue(tenant, user(), session()).expect("issue");
        assert_eq!(old.verify(&newer), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_token_for_another_issuer_is_refused() {
        let (first, _) = keys();
        let ours = UserTokens::new(
            std::slice::from_ref(&first),
            "router",
            Duration::from_secs(60),
        )
        .expect("tokens");
        let theirs =
            UserTokens::new(&[first], "elsewhere", Duration::from_secs(60)).expect("tokens");
        let (token, _) = theirs
            .issue(TenantId::from_uuid(Uuid::new_v4()), user(), session())
            .expect("issue");
        assert!(matches!(ours.verify(&token), Err(TokenError::Claims(_))));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let (first, _) = keys();
        let tokens = UserTokens::new(
            std::slice::from_ref(&first),
            "router",
            Duration::from_secs(60),
        )
        .expect("tokens");
        let shown = format!("{tokens:?}");
        assert!(!shown.contains(&first.expose_secret()[30..60]));
    }
}
