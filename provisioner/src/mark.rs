//! The ownership mark: every database and role the platform creates carries, in its
//! PostgreSQL comment, the id of the installation (catalog) that created it and when. An
//! object without this installation's mark is never altered or dropped by it: not another
//! installation's on a shared server, not the operator's own, not one whose mark is gone.
//!
//! A quarantined object (unknown to the catalog, waiting to be dropped) records the time of
//! its quarantine in the same mark, so the quarantine survives a restored or replaced
//! catalog: the server itself says since when.

use std::fmt;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::names::{DatabaseName, RoleName};
use crate::{Context, ProvisionError};

/// The id of an installation: the catalog's `installation.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Installation(pub Uuid);

impl fmt::Display for Installation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

const PREFIX: &str = "tenancy-owned";

/// An ownership mark, as written in an object's comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub installation: Installation,
    /// When the object was created (seconds precision).
    pub created_at: DateTime<Utc>,
    /// When the sweep quarantined it, if it did.
    pub quarantined_at: Option<DateTime<Utc>>,
}

impl Mark {
    /// The mark of an object created now by `installation`.
    pub fn new(installation: Installation) -> Self {
        Self {
            installation,
            created_at: truncate(Utc::now()),
            quarantined_at: None,
        }
    }

    pub fn quarantined(self, at: DateTime<Utc>) -> Self {
        Self {
            quarantined_at: Some(truncate(at)),
            ..self
        }
    }

    pub fn released(self) -> Self {
        Self {
            quarantined_at: None,
            ..self
        }
    }

    pub fn is_of(&self, installation: Installation) -> bool {
        self.installation == installation
    }

    /// Reads a comment; anything but a well-formed mark is no mark.
    pub fn parse(comment: &str) -> Option<Self> {
        let mut words = comment.split(' ');
        if words.next()? != PREFIX {
            return None;
        }
        let mut installation = None;
        let mut created_at = None;
        let mut quarantined_at = None;
        for word in words {
            let (key, value) = word.split_once('=')?;
            match key {
                "installation" if installation.is_none() => {
                    installation = Some(Installation(Uuid::try_parse(value).ok()?));
                }
                "created" if created_at.is_none() => created_at = Some(seconds(value)?),
                "quarantined" if quarantined_at.is_none() => {
                    quarantined_at = Some(seconds(value)?);
                }
                _ => return None,
            }
        }
        Some(Self {
            installation: installation?,
            created_at: created_at?,
            quarantined_at,
        })
    }

    /// The comment text: a uuid and integers only, safe inside a SQL string literal.
    pub fn comment(&self) -> String {
        let mut text = format!(
            "{PREFIX} installation={} created={}",
            self.installation.0,
            self.created_at.timestamp()
        );
        if let Some(at) = self.quarantined_at {
            text.push_str(&format!(" quarantined={}", at.timestamp()));
        }
        text
    }
}

fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

fn seconds(value: &str) -> Option<DateTime<Utc>> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    DateTime::from_timestamp(value.parse().ok()?, 0)
}

/// The `COMMENT ON DATABASE` statement that writes `mark` on `database`.
pub(crate) fn comment_on_database(database: &DatabaseName, mark: &Mark) -> String {
    format!(
        "COMMENT ON DATABASE {} IS '{}'",
        database.ident(),
        mark.comment()
    )
}

/// The `COMMENT ON ROLE` statement that writes `mark` on `role`.
pub(crate) fn comment_on_role(role: &RoleName, mark: &Mark) -> String {
    format!("COMMENT ON ROLE {} IS '{}'", role.ident(), mark.comment())
}

/// Writes `mark` on a database.
pub async fn mark_database(
    admin: &Client,
    database: &DatabaseName,
    mark: &Mark,
) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&comment_on_database(database, mark))
        .await
        .context("write the ownership mark on a database")
}

/// Writes `mark` on a role.
pub async fn mark_role(admin: &Client, role: &RoleName, mark: &Mark) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&comment_on_role(role, mark))
        .await
        .context("write the ownership mark on a role")
}

/// The mark on a database, if it exists and carries one.
pub async fn database_mark(
    admin: &Client,
    database: &DatabaseName,
) -> Result<Option<Mark>, ProvisionError> {
    let row = admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&database.as_str()],
        )
        .await
        .context("read a database's ownership mark")?;
    Ok(row
        .and_then(|row| row.get::<_, Option<String>>(0))
        .and_then(|comment| Mark::parse(&comment)))
}

/// The mark on a role, if it exists and carries one.
pub async fn role_mark(admin: &Client, role: &RoleName) -> Result<Option<Mark>, ProvisionError> {
    let row = admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role.as_str()],
        )
        .await
        .context("read a role's ownership mark")?;
    Ok(row
        .and_then(|row| row.get::<_, Option<String>>(0))
        .and_then(|comment| Mark::parse(&comment)))
}

/// The cluster's identity: `system_identifier` from `pg_control_system()`. The same for every
/// host name, address and port that reaches the cluster.
pub async fn system_identifier(admin: &Client) -> Result<String, ProvisionError> {
    admin
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .context("read the cluster's system identifier")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_through_its_comment() {
        let installation = Installation(Uuid::new_v4());
        let mark = Mark::new(installation);
        assert_eq!(Mark::parse(&mark.comment()), Some(mark));
        let quarantined = mark.quarantined(Utc::now());
        assert_eq!(Mark::parse(&quarantined.comment()), Some(quarantined));
        assert_eq!(quarantined.released(), mark);
        assert!(mark.is_of(installation));
        assert!(!mark.is_of(Installation(Uuid::new_v4())));
        assert!(
            mark.comment()
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b" -=".contains(&byte))
        );
    }

    #[test]
    fn anything_else_is_no_mark() {
        let id = Uuid::new_v4();
        for comment in [
            String::new(),
            "a database of ours".to_owned(),
            format!("tenancy-owned installation={id}"),
            "tenancy-owned created=1700000000".to_owned(),
            format!("tenancy-owned installation={id} created=-5"),
            format!("tenancy-owned installation={id} created=1700000000 extra=1"),
            format!("tenancy-owned installation={id} created=1 created=2"),
            format!("tenancy-owned  installation={id} created=1700000000"),
            format!("TENANCY-OWNED installation={id} created=1700000000"),
            "tenancy-owned installation=not-a-uuid created=1700000000".to_owned(),
        ] {
            assert_eq!(Mark::parse(&comment), None, "{comment:?}");
        }
        assert!(
            Mark::parse(&format!(
                "tenancy-owned installation={id} created=1700000000"
            ))
            .is_some()
        );
    }
}
