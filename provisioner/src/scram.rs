//! SCRAM-SHA-256 verifiers for the roles this platform makes, with an iteration count that
//! fits the password.
//!
//! A verifier is what PostgreSQL stores for a password (`rolpassword`): a salt, an
//! iteration count, and two keys derived from the password. Every login makes the *client*
//! run PBKDF2 over the password that many times; the count exists to slow down guessing a
//! weak password from a stolen verifier. PostgreSQL 15 always makes 4,096 iterations when it
//! hashes a password itself, but it accepts any count in a verifier it is given, and uses
//! that count at login.
//!
//! The platform's own roles (tenant roles, backup readers) have machine-generated passwords
//! of 40 random alphanumerics: about 238 bits. Guessing one from its verifier is out of
//! reach at one iteration or at a million; the 4,096 iterations only cost the router CPU at
//! every new connection (measured by `cargo bench -p provisioner --bench connect`). Such a
//! password gets [`MACHINE_ITERATIONS`]; anything shorter, or with other characters (a
//! password a person chose), keeps PostgreSQL's [`DEFAULT_ITERATIONS`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// PostgreSQL's own count, for any password that may be a person's.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// For machine-generated passwords (see the module's documentation).
pub const MACHINE_ITERATIONS: u32 = 16;
/// The shortest password counted as machine-generated (32 alphanumerics: 190 bits).
pub const MACHINE_PASSWORD_MIN_LEN: usize = 32;

/// The verifier to store for `password`, with a fresh random salt.
pub fn verifier(password: &str) -> String {
    let mut salt = [0_u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    verifier_with(password, &salt, iterations_for(password))
}

/// How many iterations `password` gets: few for a long random-looking machine password,
/// PostgreSQL's default otherwise.
pub fn iterations_for(password: &str) -> u32 {
    let machine = password.len() >= MACHINE_PASSWORD_MIN_LEN
        && password.bytes().all(|byte| byte.is_ascii_alphanumeric());
    if machine {
        MACHINE_ITERATIONS
    } else {
        DEFAULT_ITERATIONS
    }
}

/// A verifier in PostgreSQL's format,
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802, RFC 7677).
/// The password is used as given: callers pass ASCII passwords, which SASLprep leaves
/// unchanged.
pub fn verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let salted = salted_password(password.as_bytes(), salt, iterations.max(1));
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC-SHA-256 takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 of one 32-byte block: `Hi(password, salt, i)` of RFC 5802.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1_u32.to_be_bytes());
    let mut previous = hmac(password, &first);
    let mut result = previous;
    for _ in 1..iterations {
        previous = hmac(password, &previous);
        for (out, byte) in result.iter_mut().zip(previous) {
            *out ^= byte;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user `user`, password `pencil`, salt `W22ZaJ0SNY7soEsUEjb6gQ==`,
    /// 4,096 iterations; the server's signature it gives (`v=...`) is HMAC(ServerKey,
    /// AuthMessage), so a verifier whose ServerKey reproduces it is the one PostgreSQL would
    /// make.
    #[test]
    fn matches_rfc_7677() {
        let salt = STANDARD
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .expect("the salt");
        let verifier = verifier_with("pencil", &salt, 4096);
        let server_key = STANDARD
            .decode(verifier.rsplit(':').next().expect("the server key"))
            .expect("base64");
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac(&server_key, auth_message.as_bytes());
        assert_eq!(
            STANDARD.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    }

    #[test]
    fn only_long_machine_passwords_get_few_iterations() {
        let machine = "aB3".repeat(14);
        assert_eq!(iterations_for(&machine), MACHINE_ITERATIONS);
        assert!(verifier(&machine).starts_with("SCRAM-SHA-256$16:"));
        for human in [
            "correct horse battery staple and more words here",
            "short1",
            "aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3a",
        ] {
            assert_eq!(iterations_for(human), DEFAULT_ITERATIONS, "{human}");
        }
    }
}
