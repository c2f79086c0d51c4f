//! The operations library: everything the platform does to tenants, servers and their
//! databases, shared by the control plane (HTTP, jobs) and `tenantctl`. No HTTP here: one
//! error type ([`error::OpsError`]) that the control plane maps once into problem
//! documents.
//!
//! Two layers:
//! - **Per-server DDL** ([`names`], [`mark`], [`server`], [`template`], [`tenant`],
//!   [`backup`]): prepare a server and its template database, create a tenant's role and
//!   database (a clone of the template), set the plan's limits on the role, quarantine and
//!   drop what this installation made, list what exists on a server. These modules touch
//!   no catalog. This is the only code that issues DDL on tenant servers; every SQL
//!   identifier comes from [`names`], derived from ids only; every operation is
//!   idempotent.
//! - **Orchestration over the catalog** ([`platform`], [`error`], [`locks`], [`tenants`],
//!   [`servers`], [`plans`], [`migrations`], [`backups`], [`sweep`], [`jobs`]): tenants and
//!   their provisioning steps, placement, plan changes, fleet migrations, backups and
//!   restores, the sweep, the background jobs' bodies, super-admins ([`admins`]) and service
//!   tokens ([`tokens`]).
//! - **What clients see** ([`wire`]): the JSON shapes of the API and `tenantctl --json`,
//!   made from catalog rows (no row is serialized as it is).

pub mod admins;
pub mod backup;
pub mod backups;
pub mod error;
pub mod jobs;
pub mod locks;
pub mod mark;
pub mod migrations;
pub mod names;
pub mod plans;
pub mod platform;
pub mod scram;
pub mod server;
pub mod servers;
pub mod sweep;
pub mod template;
pub mod tenant;
pub mod tenants;
pub mod tokens;
pub mod wire;

pub use error::{OpsError, OpsResult};
pub use mark::{Installation, Mark};
pub use names::{DatabaseName, RoleName};
pub use platform::{Platform, Settings};
pub use server::ServerAddress;
pub use tenant::{DatabaseObject, RoleLimits, RoleObject, TenantObjects};
pub use tokio_postgres;

/// What can go wrong talking to a database server.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("connect to {server} as {user}: {}", describe(source))]
    Connect {
        server: String,
        user: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("connect to {server} as {user}: no answer within {seconds} s")]
    ConnectTimeout {
        server: String,
        user: String,
        seconds: u64,
    },
    #[error("{action}: {}", describe(source))]
    Database {
        action: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migrate the tenant schema: {}", describe_migration(.0))]
    Migrate(#[from] refinery::Error),
    /// The object does not carry this installation's ownership mark: it is left alone.
    #[error("{object} does not carry this installation's ownership mark; it is left untouched")]
    NotOurs { object: String },
}

/// A database error with the server's message and SQLSTATE (tokio-postgres only says
/// "db error" in its `Display`).
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {detail} (SQLSTATE {})", db.message(), db.code().code()),
            None => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        },
        None => error.to_string(),
    }
}

/// A refinery error with the server's own message when a step failed on the server.
pub fn describe_migration(error: &refinery::Error) -> String {
    match error.kind() {
        refinery::error::Kind::Connection(action, source) => {
            match source.downcast_ref::<tokio_postgres::Error>() {
                Some(database) => format!("{action}: {}", describe(database)),
                None => format!("{action}: {source}"),
            }
        }
        other => other.to_string(),
    }
}

impl ProvisionError {
    /// The SQLSTATE the server answered with, if it answered.
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            Self::Connect { source, .. } | Self::Database { source, .. } => {
                source.code().map(tokio_postgres::error::SqlState::code)
            }
            Self::Migrate(_) | Self::NotOurs { .. } | Self::ConnectTimeout { .. } => None,
        }
    }
}

/// Attaches an action (a verb phrase) to a database error.
pub(crate) trait Context<T> {
    fn context(self, action: &'static str) -> Result<T, ProvisionError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, action: &'static str) -> Result<T, ProvisionError> {
        self.map_err(|source| ProvisionError::Database { action, source })
    }
}
