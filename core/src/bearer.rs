//! The bearer token of an `Authorization` header.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header.
    Missing,
    /// Something else than `Bearer <token>`.
    Malformed,
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
pub fn token(header: Option<&[u8]>) -> Result<&str, BearerError> {
    let value = header.ok_or(BearerError::Missing)?;
    std::str::from_utf8(value)
        .ok()
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or(BearerError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_with_a_token_is_one() {
        assert_eq!(token(Some(b"Bearer abc")), Ok("abc"));
        assert_eq!(token(Some(b"bearer  abc ")), Ok("abc"));
        assert_eq!(token(None), Err(BearerError::Missing));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer   ",
            b"abc",
            b"Bearer \xff",
        ] {
            assert_eq!(token(Some(bad)), Err(BearerError::Malformed), "{bad:?}");
        }
    }
}
