//! Identifiers. Each one is parsed once at the edge and is valid by construction after
//! that; SQL identifiers are only ever derived from these, never from raw input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Why a value is not a valid identifier. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            /// The id a stored UUID names (read from the catalog or a token).
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(formatter)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(value)
                    .map(Self)
                    .map_err(|_| IdError(format!("`{value}` is not a UUID")))
            }
        }
    };
}

uuid_id!(
    /// A tenant's permanent identity. Slugs can be reused after deletion; ids never are.
    TenantId
);
uuid_id!(
    /// A super-admin of the control plane.
    AdminId
);
uuid_id!(
    /// A database server tenants are placed on.
    ServerId
);
uuid_id!(
    /// One backup attempt (complete, failed, running or pruned).
    BackupId
);

/// A fleet migration run (the catalog numbers them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct RunId(i64);

impl RunId {
    pub const fn from_i64(id: i64) -> Self {
        Self(id)
    }

    pub const fn as_i64(&self) -> i64 {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                raw.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A tenant's slug: `^[a-z][a-z0-9-]{1,38}[a-z0-9]$`. Unique and immutable; it names the
/// tenant in URLs, never in database object names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);
string_id!(Slug);

impl FromStr for Slug {
    type Err = IdError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bytes = value.as_bytes();
        let valid = (3..=40).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && bytes[bytes.len() - 1] != b'-';
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError(
                "a slug is 3 to 40 characters of a-z, 0-9 and '-', starting with a letter \
                 and not ending with '-'"
                    .to_owned(),
            ))
        }
    }
}

/// A plan's name: `^[a-z][a-z0-9_-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanName(String);
string_id!(PlanName);

impl FromStr for PlanName {
    type Err = IdError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bytes = value.as_bytes();
        let valid = (1..=63).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_');
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError(
                "a plan name is 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter"
                    .to_owned(),
            ))
        }
    }
}

/// An e-mail address, trimmed and lower-cased so that lookups are case-insensitive. The
/// check is deliberately shallow (one `@`, a dot in the domain, no spaces): the address is
/// a login name, not a mailbox we deliver to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);
string_id!(Email);

impl FromStr for Email {
    type Err = IdError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let normalized = value.trim().to_lowercase();
        let valid = normalized.len() <= 254
            && !normalized
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            && match normalized.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if valid {
            Ok(Self(normalized))
        } else {
            Err(IdError(format!(
                "`{}` is not an e-mail address",
                value.trim()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_spec_pattern() {
        for good in [
            "acme",
            "a1b",
            "acme-corp-2",
            &format!("a{}", "b".repeat(39)),
        ] {
            assert!(good.parse::<Slug>().is_ok(), "{good} should be a slug");
        }
        for bad in [
            "",
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "-acme",
            "acme_corp",
            "a\"; drop database x; --",
            "аcme", // Cyrillic 'а'
            "acme\u{200b}x",
            &format!("a{}", "b".repeat(40)),
        ] {
            assert!(bad.parse::<Slug>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn emails_are_normalised() {
        let email: Email = "  Admin@Example.COM ".parse().expect("valid");
        assert_eq!(email.as_str(), "admin@example.com");
        for bad in [
            "admin",
            "admin@",
            "@example.com",
            "a b@example.com",
            "a@b@c.com",
            "a@localhost",
        ] {
            assert!(bad.parse::<Email>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn plan_names() {
        assert!("trial".parse::<PlanName>().is_ok());
        assert!("gold_2".parse::<PlanName>().is_ok());
        assert!("Gold".parse::<PlanName>().is_err());
        assert!("2gold".parse::<PlanName>().is_err());
    }
}
