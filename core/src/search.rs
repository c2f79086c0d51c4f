//! Search text as `LIKE` patterns: lower-cased, with `LIKE`'s own characters escaped, so a
//! search for `%` or `_` finds those characters and nothing else.

/// `text` with `\`, `%` and `_` escaped for `LIKE` (whose default escape is `\`).
pub fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A pattern matching values that contain `q` (trimmed, lower-cased); none when empty.
pub fn contains(q: Option<&str>) -> Option<String> {
    let text = q.map(str::trim).filter(|q| !q.is_empty())?;
    Some(format!("%{}%", escape_like(&text.to_lowercase())))
}

/// A pattern matching values that start with `q` (trimmed, lower-cased); none when empty.
pub fn prefix(q: Option<&str>) -> Option<String> {
    let text = q.map(str::trim).filter(|q| !q.is_empty())?;
    Some(format!("{}%", escape_like(&text.to_lowercase())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacharacters_are_only_characters() {
        assert_eq!(
            contains(Some(" A_b%\\ ")).as_deref(),
            Some("%a\\_b\\%\\\\%")
        );
        assert_eq!(prefix(Some("Ab")).as_deref(), Some("ab%"));
        assert_eq!(contains(Some("  ")), None);
        assert_eq!(prefix(None), None);
    }
}
