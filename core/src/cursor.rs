//! Page cursors: the position after the last item of a page (its `created_at` and id), as
//! an opaque URL-safe string. A cursor this API did not give out decodes to nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub fn encode(created_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{id}", created_at.to_rfc3339()))
}

pub fn decode(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (time, id) = text.split_once('|')?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    Some((time, Uuid::parse_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_anything_else_is_refused() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T05:04:20.123456Z")
            .expect("time")
            .with_timezone(&Utc);
        let id = Uuid::new_v4();
        let cursor = encode(at, id);
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode(&cursor), Some((at, id)));
        for bad in [
            "",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("no separator"),
            &URL_SAFE_NO_PAD.encode("yesterday|x"),
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
