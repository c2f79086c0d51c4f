//! Names of database objects. They are derived from ids only, never from customer input:
//! `pg_database` and `pg_roles` are visible to every role on a server, so a name must not
//! reveal which customer it belongs to, and only `[a-z0-9_]` ever reaches SQL.

use std::fmt;

use tenancy_core::TenantId;
use uuid::Uuid;

/// The database every tenant database is cloned from, one per server.
pub const TEMPLATE_DATABASE: &str = "tenancy_template";
/// Owns the tenant schema's objects in every tenant database. Nobody logs in as it.
pub const SCHEMA_OWNER_ROLE: &str = "tenancy_schema_owner";
/// Prefix of tenant databases and roles.
const TENANT_PREFIX: &str = "t_";
/// Prefix of pre-cloned databases waiting for a tenant.
const WARM_PREFIX: &str = "tenancy_warm_";

/// A database name made of `[a-z0-9_]`, safe to put in SQL between double quotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatabaseName(String);

impl DatabaseName {
    pub fn for_tenant(tenant: TenantId) -> Self {
        Self(format!("{TENANT_PREFIX}{}", tenant.as_uuid().simple()))
    }

    /// A fresh name for a tenant's database restored from a backup: `t_<id>_<8 hex>`. The
    /// tenant is switched to it in the catalog once it is ready.
    pub fn restored(tenant: TenantId) -> Self {
        let suffix = Uuid::new_v4().simple().to_string();
        Self(format!(
            "{TENANT_PREFIX}{}_{}",
            tenant.as_uuid().simple(),
            &suffix[..8]
        ))
    }

    /// A fresh name for a warm (pre-cloned, unassigned) database.
    pub fn warm() -> Self {
        Self(format!("{WARM_PREFIX}{}", Uuid::new_v4().simple()))
    }

    /// Recognises a name this module made (say, while listing a server).
    pub fn parse(name: &str) -> Option<Self> {
        let tenant = name.strip_prefix(TENANT_PREFIX).is_some_and(|rest| {
            let (id, suffix) = rest.split_at_checked(32).unwrap_or((rest, ""));
            let suffix_ok = suffix.is_empty()
                || (suffix.len() == 9
                    && suffix.starts_with('_')
                    && suffix[1..]
                        .bytes()
                        .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)));
            id.len() == 32
                && id.bytes().all(|byte| byte.is_ascii_hexdigit())
                && Uuid::try_parse(id).is_ok()
                && suffix_ok
        });
        let warm = name
            .strip_prefix(WARM_PREFIX)
            .is_some_and(|rest| rest.len() == 32 && Uuid::try_parse(rest).is_ok());
        (tenant || warm).then(|| Self(name.to_owned()))
    }

    /// The tenant this database belongs to, unless it is a warm one.
    pub fn tenant(&self) -> Option<TenantId> {
        self.0
            .strip_prefix(TENANT_PREFIX)
            .and_then(|rest| rest.get(..32))
            .and_then(|id| Uuid::try_parse(id).ok())
            .map(TenantId::from_uuid)
    }

    pub fn is_warm(&self) -> bool {
        self.0.starts_with(WARM_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier.
    pub fn ident(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for DatabaseName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The login role a tenant's application (through the router) uses. Made of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleName(String);

impl RoleName {
    pub fn for_tenant(tenant: TenantId) -> Self {
        Self(format!("{TENANT_PREFIX}{}_app", tenant.as_uuid().simple()))
    }

    /// Recognises a tenant role name (say, while listing a server).
    pub fn parse(name: &str) -> Option<Self> {
        name.strip_prefix(TENANT_PREFIX)
            .and_then(|rest| rest.strip_suffix("_app"))
            .filter(|hex| hex.len() == 32 && Uuid::try_parse(hex).is_ok())
            .map(|_| Self(name.to_owned()))
    }

    pub fn tenant(&self) -> Option<TenantId> {
        self.0
            .strip_prefix(TENANT_PREFIX)
            .and_then(|rest| rest.strip_suffix("_app"))
            .and_then(|hex| Uuid::try_parse(hex).ok())
            .map(TenantId::from_uuid)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn ident(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_opaque_and_round_trip() {
        let tenant = TenantId::new();
        let database = DatabaseName::for_tenant(tenant);
        let role = RoleName::for_tenant(tenant);
        assert!(database.as_str().len() <= 63 && role.as_str().len() <= 63);
        assert!(
            database
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
        assert_eq!(
            DatabaseName::parse(database.as_str()).and_then(|d| d.tenant()),
            Some(tenant)
        );
        assert_eq!(
            RoleName::parse(role.as_str()).and_then(|r| r.tenant()),
            Some(tenant)
        );
        assert!(DatabaseName::parse("postgres").is_none());
        assert!(DatabaseName::parse("t_acme").is_none());
        let restored = DatabaseName::restored(tenant);
        assert_eq!(
            DatabaseName::parse(restored.as_str()),
            Some(restored.clone())
        );
        assert_eq!(restored.tenant(), Some(tenant));
        assert_ne!(restored, DatabaseName::for_tenant(tenant));
        assert!(
            DatabaseName::parse(&format!("{}_zzzzzzzz", DatabaseName::for_tenant(tenant)))
                .is_none()
        );
        assert!(RoleName::parse("t_acme_app").is_none());
        let warm = DatabaseName::warm();
        assert!(warm.is_warm() && warm.tenant().is_none());
        assert_eq!(DatabaseName::parse(warm.as_str()), Some(warm));
    }
}
