//! Password hashing with argon2id (PHC string format, parameters in the hash so they can be
//! raised later without breaking old hashes).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::rngs::OsRng;

/// The shortest password accepted for a new account.
pub const MIN_PASSWORD_LENGTH: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password must be at least {MIN_PASSWORD_LENGTH} characters")]
    TooShort,
    #[error("a password must be at most 1024 characters")]
    TooLong,
    #[error("a password must not be the e-mail address")]
    SameAsEmail,
    #[error("this password is among the most common ones; choose another")]
    Common,
    #[error("hash the password: {0}")]
    Hash(String),
}

/// Passwords of at least [`MIN_PASSWORD_LENGTH`] characters that lists of leaked passwords
/// rank highest (compared case-insensitively).
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456123456",
    "111111111111",
    "000000000000",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "password123!",
    "qwertyuiopas",
    "qwertyuiop12",
    "qwerty123456",
    "qwertyqwerty",
    "1qaz2wsx3edc",
    "1q2w3e4r5t6y",
    "abc123abc123",
    "abcdefghijkl",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "welcome123456",
    "administrator",
    "administrator1",
    "changeme1234",
    "trustno11234",
    "monkey123456",
    "football1234",
    "baseball1234",
    "superman1234",
    "sunshine1234",
    "princess1234",
    "starwars1234",
    "dragon123456",
    "master123456",
    "correcthorsebatterystaple",
    "correct horse battery staple",
];

/// Checks the password policy: length (long passphrases beat composition rules), not the
/// account's own e-mail address (nor its part before the `@`), not a common password.
pub fn check_new_password(password: &str, email: &str) -> Result<(), PasswordError> {
    check_password_policy(password)?;
    let lowered = password.trim().to_lowercase();
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if lowered == email || (!local.is_empty() && lowered == local) {
        return Err(PasswordError::SameAsEmail);
    }
    if COMMON.contains(&lowered.as_str()) {
        return Err(PasswordError::Common);
    }
    Ok(())
}

/// Checks the length part of the password policy.
pub fn check_password_policy(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(PasswordError::TooShort);
    }
    if password.len() > 1024 {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Hashes a password that already passed the policy (argon2id, random salt).
pub fn hash_checked_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hash(error.to_string()))
}

/// Checks the password policy, then hashes with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_password_policy(password)?;
    hash_checked_password(password)
}

/// Whether `password` matches `hash`. A malformed hash never matches.
pub fn verify_password(hash: &str, password: &str) -> bool {
    if password.len() > 1024 {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_reject() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert!(matches!(
            hash_password("short"),
            Err(PasswordError::TooShort)
        ));
    }

    #[test]
    fn a_new_password_is_not_the_email_nor_a_common_one() {
        let email = "dana.scully@example.com";
        assert!(check_new_password("a long enough password", email).is_ok());
        assert!(matches!(
            check_new_password("Dana.Scully@Example.com", email),
            Err(PasswordError::SameAsEmail)
        ));
        assert!(matches!(
            check_new_password("dana.scully-", "dana.scully-@example.com"),
            Err(PasswordError::SameAsEmail)
        ));
        assert!(matches!(
            check_new_password("Password1234", email),
            Err(PasswordError::Common)
        ));
        assert!(matches!(
            check_new_password("short", email),
            Err(PasswordError::TooShort)
        ));
        for common in COMMON {
            assert!(common.chars().count() >= MIN_PASSWORD_LENGTH, "{common}");
        }
    }
}
