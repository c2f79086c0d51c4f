//! Signed tokens (JWT, EdDSA over Ed25519).
//!
//! Verification is strict by construction: the algorithm is pinned to EdDSA whatever the
//! header says, the key is chosen only from the configured key set by the header's `kid`
//! (so two keys can be valid during a rotation), and `exp`, `iss`, `aud` and `sub` are
//! required and checked.

use std::collections::HashMap;

use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
    spki::der::pem::LineEnding,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;

/// Why a token was refused. Every variant means 401 to a client; the text is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token is signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's claims are invalid: {0}")]
    Claims(String),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key is not an Ed25519 private key in PKCS#8 PEM form")]
    NotEd25519Pem,
    #[error("encode the key: {0}")]
    Encode(String),
}

/// An Ed25519 key pair that signs tokens. Its `kid` is derived from the public key.
pub struct TokenKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_pem: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A new random key, and its private PEM to store.
    pub fn generate() -> Result<(Self, SecretString), KeyError> {
        let signing = SigningKey::generate(&mut OsRng);
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.to_string()))?;
        let pem = SecretString::from(pem.to_string());
        Ok((Self::from_pem(&pem)?, pem))
    }

    /// Loads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &SecretString) -> Result<Self, KeyError> {
        let signing =
            SigningKey::from_pkcs8_pem(pem.expose_secret()).map_err(|_| KeyError::NotEd25519Pem)?;
        let encoding = EncodingKey::from_ed_pem(pem.expose_secret().as_bytes())
            .map_err(|_| KeyError::NotEd25519Pem)?;
        let verifying = signing.verifying_key();
        let public_pem = verifying
            .to_public_key_pem(LineEnding::LF)
            .map_err(|error| KeyError::Encode(error.to_string()))?;
        let decoding = DecodingKey::from_ed_pem(public_pem.as_bytes())
            .map_err(|error| KeyError::Encode(error.to_string()))?;
        let digest = Sha256::digest(verifying.as_bytes());
        let kid = digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(Self {
            kid,
            encoding,
            decoding,
            public_pem,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, PEM-encoded, for verifiers elsewhere.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// Signs `claims` with this key, naming it in the header's `kid`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|error| KeyError::Encode(error.to_string()))
    }
}

/// The key id of a public key: the first 8 bytes of its SHA-256, in hex.
fn kid_of(verifying: &VerifyingKey) -> String {
    let digest = Sha256::digest(verifying.as_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Verifies tokens of one issuer and audience against a set of public keys.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new<'a>(
        keys: impl IntoIterator<Item = &'a TokenKey>,
        issuer: &str,
        audience: &str,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Self {
            keys: keys
                .into_iter()
                .map(|key| (key.kid.clone(), key.decoding.clone()))
                .collect(),
            validation,
        }
    }

    /// A verifier from public keys alone (PEM, `BEGIN PUBLIC KEY`), as a router holds them.
    pub fn from_public_pems(
        pems: &[String],
        issuer: &str,
        audience: &str,
    ) -> Result<Self, KeyError> {
        let mut verifier = Self::new([], issuer, audience);
        for pem in pems {
            let verifying =
                VerifyingKey::from_public_key_pem(pem).map_err(|_| KeyError::NotEd25519Pem)?;
            let decoding =
                DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| KeyError::NotEd25519Pem)?;
            verifier.keys.insert(kid_of(&verifying), decoding);
        }
        Ok(verifier)
    }

    /// The verified claims of `token`.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Algorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<C>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAlgorithm => TokenError::Algorithm,
                ErrorKind::InvalidIssuer => TokenError::Claims("wrong issuer".to_owned()),
                ErrorKind::InvalidAudience => TokenError::Claims("wrong audience".to_owned()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::Claims(format!("`{claim}` is missing"))
                }
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_) => TokenError::Malformed,
                _ => TokenError::Claims("the claims do not validate".to_owned()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        sub: String,
        iss: String,
        aud: String,
        exp: i64,
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "someone".to_owned(),
            iss: "issuer".to_owned(),
            aud: "audience".to_owned(),
            exp,
        }
    }

    #[test]
    fn round_trip_and_rotation() {
        let (old, _) = TokenKey::generate().expect("key");
        let (new, pem) = TokenKey::generate().expect("key");
        let reloaded = TokenKey::from_pem(&pem).expect("reload");
        assert_eq!(reloaded.kid(), new.kid());
        let verifier = TokenVerifier::new([&old, &new], "issuer", "audience");
        let exp = now() + 60;
        for key in [&old, &new] {
            let token = key.sign(&claims(exp)).expect("sign");
            assert_eq!(verifier.verify::<Claims>(&token), Ok(claims(exp)));
        }
        let (stranger, _) = TokenKey::generate().expect("key");
        let token = stranger.sign(&claims(now() + 60)).expect("sign");
        assert_eq!(
            verifier.verify::<Claims>(&token),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn expiry_issuer_and_audience_are_enforced() {
        let (key, _) = TokenKey::generate().expect("key");
        let verifier = TokenVerifier::new([&key], "issuer", "audience");
        let expired = key.sign(&claims(now() - 60)).expect("sign");
        assert_eq!(
            verifier.verify::<Claims>(&expired),
            Err(TokenError::Expired)
        );
        let mut wrong = claims(now() + 60);
        wrong.aud = "other".to_owned();
        assert!(matches!(
            verifier.verify::<Claims>(&key.sign(&wrong).expect("sign")),
            Err(TokenError::Claims(_))
        ));
        let mut wrong = claims(now() + 60);
        wrong.iss = "other".to_owned();
        assert!(matches!(
            verifier.verify::<Claims>(&key.sign(&wrong).expect("sign")),
            Err(TokenError::Claims(_))
        ));
    }
}
