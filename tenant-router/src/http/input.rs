//! What list routes share (limit, cursor, search) and the checks on bodies: every problem
//! names its field, and all of a body's problems are told at once.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::cursor::Cursors;
use crate::error::{RouterError, RouterResult};

/// `?limit=&cursor=&q=` of a list route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub q: Option<String>,
}

/// A list request, checked.
pub struct Listing {
    pub limit: i64,
    /// After this (created_at, id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// `search` as a LIKE prefix pattern, metacharacters escaped.
    pub pattern: Option<String>,
    scope: &'static str,
}

impl ListParams {
    /// Checks the parameters; the cursor must be one `cursors` sealed for the list `scope`.
    pub fn check(&self, cursors: &Cursors, scope: &'static str) -> RouterResult<Listing> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(RouterError::BadRequest(
                "`limit` must be between 1 and 500".to_owned(),
            ));
        }
        if self.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
            return Err(RouterError::BadRequest(
                "`q` must be at most 200 characters".to_owned(),
            ));
        }
        let after = self
            .cursor
            .as_deref()
            .map(|cursor| {
                cursors
                    .open(scope, cursor)
                    .and_then(|position| {
                        let (time, id) = position.split_once('|')?;
                        let time = DateTime::parse_from_rfc3339(time).ok()?;
                        Some((time.with_timezone(&Utc), Uuid::parse_str(id).ok()?))
                    })
                    .ok_or_else(|| {
                        RouterError::BadRequest(
                            "`cursor` is not a cursor this list gave out".to_owned(),
                        )
                    })
            })
            .transpose()?;
        let pattern = tenancy_core::search::prefix(self.q.as_deref());
        Ok(Listing {
            limit,
            after,
            pattern,
            scope,
        })
    }
}

impl Listing {
    /// The cursor after the last of `items` when the page is full, sealed to this list.
    pub fn next_cursor<T>(
        &self,
        cursors: &Cursors,
        items: &[T],
        key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
    ) -> Option<String> {
        (items.len() == usize::try_from(self.limit).unwrap_or(usize::MAX))
            .then(|| items.last())
            .flatten()
            .map(|last| {
                let (created_at, id) = key(last);
                cursors.seal(self.scope, &format!("{}|{id}", created_at.to_rfc3339()))
            })
    }
}

/// Searches of at least this many characters match anywhere (trigram indexes); shorter
/// ones, which have no trigram to look up, match prefixes.
pub const SUBSTRING_FROM: usize = 3;

/// A search text as a `LIKE` pattern on lower-cased columns: a substring when it is long
/// enough for the trigram indexes, else a prefix; none when empty.
pub fn search_pattern(q: Option<&str>) -> Option<String> {
    if q.is_some_and(|q| q.trim().chars().count() >= SUBSTRING_FROM) {
        tenancy_core::search::contains(q)
    } else {
        tenancy_core::search::prefix(q)
    }
}

/// The problems found in a body.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{field}: {message}"));
    }

    /// `value`, when given, has `low` to `high` characters.
    pub fn length(&mut self, field: &str, value: Option<&str>, low: usize, high: usize) {
        if let Some(value) = value {
            let count = value.chars().count();
            if !(low..=high).contains(&count) {
                self.push(field, format!("must be {low} to {high} characters"));
            }
        }
    }

    /// An e-mail address, normalised; a problem when it is not one.
    pub fn email(&mut self, field: &str, value: &str) -> Option<String> {
        match value.parse::<tenancy_core::Email>() {
            Ok(email) => Some(email.as_str().to_owned()),
            Err(error) => {
                self.push(field, error);
                None
            }
        }
    }

    /// A 422 naming every problem, or nothing.
    pub fn finish(self) -> RouterResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RouterError::Invalid {
                code: "validation_failed",
                detail: self.0.join("; "),
            })
        }
    }
}

/// A path id: anything but a UUID is no such entity.
pub fn path_id<T: std::str::FromStr>(
    id: &str,
    not_found: impl FnOnce() -> RouterError,
) -> RouterResult<T> {
    id.parse().map_err(|_| not_found())
}

/// The constraint a tenant database error violated, if it is one.
pub fn violated(error: &tokio_postgres::Error) -> Option<&str> {
    error.as_db_error().and_then(|db| db.constraint())
}

/// Page of a list route.
#[derive(serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
