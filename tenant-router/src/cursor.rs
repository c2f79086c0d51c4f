//! Page cursors that cannot be forged or moved: a position (the sort key and id of the last
//! item given out) and an HMAC over it and the list it belongs to, under a key of this
//! router's (derived from its signing keys, so replicas agree). A cursor from another list
//! or sort, or one a client edited, is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag kept in a cursor.
const TAG_BYTES: usize = 16;

pub struct Cursors {
    key: [u8; 32],
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Cursors").finish_non_exhaustive()
    }
}

impl Cursors {
    /// Cursors keyed by `secret` (any length; hashed into the key).
    pub fn new(secret: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"tenancy-router page cursors\0");
        hasher.update(secret);
        Self {
            key: hasher.finalize().into(),
        }
    }

    fn tag(&self, scope: &str, position: &str) -> [u8; TAG_BYTES] {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\0");
        mac.update(position.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0_u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }

    /// A cursor for `position` in the list `scope` (say `customers:name`).
    pub fn seal(&self, scope: &str, position: &str) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(position),
            URL_SAFE_NO_PAD.encode(self.tag(scope, position))
        )
    }

    /// The position a cursor of `scope` holds; `None` for anything else.
    pub fn open(&self, scope: &str, cursor: &str) -> Option<String> {
        let (position, tag) = cursor.split_once('.')?;
        let position = String::from_utf8(URL_SAFE_NO_PAD.decode(position).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\0");
        mac.update(position.as_bytes());
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag).ok()?;
        (tag.len() == TAG_BYTES).then_some(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_opens_only_where_it_was_given_and_unchanged() {
        let cursors = Cursors::new(b"secret");
        let cursor = cursors.seal("customers:name", "Acme|0b1c");
        assert_eq!(
            cursors.open("customers:name", &cursor).as_deref(),
            Some("Acme|0b1c")
        );
        assert_eq!(
            cursors.open("customers:code", &cursor),
            None,
            "another sort"
        );
        assert_eq!(
            cursors.open("suppliers:name", &cursor),
            None,
            "another list"
        );
        let (_, tag) = cursor.split_once('.').expect("two parts");
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("Zeta|0b1c"));
        assert_eq!(cursors.open("customers:name", &forged), None, "edited");
        assert_eq!(Cursors::new(b"other").open("customers:name", &cursor), None);
        for garbage in ["", ".", "abc", "a.b.c", "%%.%%"] {
            assert_eq!(cursors.open("customers:name", garbage), None, "{garbage}");
        }
    }
}
