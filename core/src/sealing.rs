//! Sealing secrets stored in the catalog (tenant role passwords, server admin passwords)
//! with an AEAD: XChaCha20-Poly1305, a random 192-bit nonce per value, and associated data
//! that names what the value belongs to, so a ciphertext copied to another row does not
//! open there.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the catalog key must be 32 bytes, base64-encoded (generate one with `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("a sealed value does not open with this key and context (wrong key, or tampered)")]
    Open,
    #[error("seal a value")]
    Seal,
}

/// The catalog key. Cloning shares the cipher, not a copy of the key material in text.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// From the base64 form of a 32-byte key.
    pub fn from_base64(key: &SecretString) -> Result<Self, SealError> {
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| SealError::BadKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self { cipher })
    }

    /// A new random key, base64-encoded, for development set-ups.
    pub fn generate_key() -> SecretString {
        SecretString::from(STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng)))
    }

    /// `nonce || ciphertext` of `plaintext`, bound to `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Opens what [`Sealer::seal`] sealed with the same context.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)
    }

    /// Seals a secret string.
    pub fn seal_secret(&self, context: &str, secret: &SecretString) -> Result<Vec<u8>, SealError> {
        self.seal(context, secret.expose_secret().as_bytes())
    }

    /// Opens a sealed secret string.
    pub fn open_secret(&self, context: &str, sealed: &[u8]) -> Result<SecretString, SealError> {
        let bytes = self.open(context, sealed)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let sealer = Sealer::from_base64(&Sealer::generate_key()).expect("key");
        let sealed = sealer.seal("tenant:1", b"hunter2").expect("seal");
        assert!(
            !sealed.windows(7).any(|window| window == b"hunter2"),
            "no plaintext inside"
        );
        assert_eq!(sealer.open("tenant:1", &sealed).expect("open"), b"hunter2");
        assert!(
            sealer.open("tenant:2", &sealed).is_err(),
            "another row's context"
        );
        let other = Sealer::from_base64(&Sealer::generate_key()).expect("key");
        assert!(other.open("tenant:1", &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(sealer.open("tenant:1", &tampered).is_err());
        assert_ne!(
            sealer.seal("tenant:1", b"hunter2").expect("seal"),
            sealed,
            "fresh nonce each time"
        );
        assert!(Sealer::from_base64(&SecretString::from("c2hvcnQ=".to_owned())).is_err());
    }
}
