//! Preparing a server for tenants: the schema owner role, closed maintenance databases, and
//! the template database at the newest tenant schema version.

use tenant_schema::MigrationSet;
use tokio_postgres::Client;

use crate::names::{SCHEMA_OWNER_ROLE, TEMPLATE_DATABASE};
use crate::server::ServerAddress;
use crate::{Context, ProvisionError};

/// Advisory lock (on the `postgres` database) held exclusively while the template changes
/// and shared while it is cloned: `CREATE DATABASE ... TEMPLATE` fails if anybody is
/// connected to the template.
pub(crate) const TEMPLATE_LOCK: i64 = 0x7465_6e61_6e63_7901;

/// What [`prepare_server`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The template's schema version after preparation.
    pub schema_version: i64,
    /// Migration steps applied to the template just now.
    pub applied_steps: usize,
}

/// Makes a server ready for tenants. Idempotent; safe to run concurrently (it serialises on
/// an advisory lock).
pub async fn prepare_server(
    server: &ServerAddress,
    migrations: &MigrationSet,
) -> Result<Prepared, ProvisionError> {
    let admin = server.connect("postgres").await?;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .context("take the template lock")?;
    let result = prepare_locked(server, &admin, migrations).await;
    let _ = admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await;
    result
}

async fn prepare_locked(
    server: &ServerAddress,
    admin: &Client,
    migrations: &MigrationSet,
) -> Result<Prepared, ProvisionError> {
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SCHEMA_OWNER_ROLE}') THEN \
                 CREATE ROLE {SCHEMA_OWNER_ROLE} NOLOGIN; \
               END IF; \
               IF NOT pg_has_role(current_user, '{SCHEMA_OWNER_ROLE}', 'MEMBER') THEN \
                 GRANT {SCHEMA_OWNER_ROLE} TO CURRENT_USER; \
               END IF; \
             END $$"
        ))
        .await
        .context("create the schema owner role")?;
    // Tenant roles may connect to their own database only: close every other database to
    // PUBLIC (tenant databases are closed when they are created).
    let others = admin
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND datname !~ '^(t_|tenancy_warm_)'",
            &[],
        )
        .await
        .context("list the server's databases")?;
    for row in others {
        let name: String = row.get(0);
        admin
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                quote_ident(&name)
            ))
            .await
            .context("close a maintenance database to PUBLIC")?;
    }
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&TEMPLATE_DATABASE],
        )
        .await
        .context("look for the template database")?
        .get(0);
    if !exists {
        // CREATE DATABASE refuses to run in a (multi-statement) transaction block.
        admin
            .batch_execute(&format!("CREATE DATABASE {TEMPLATE_DATABASE}"))
            .await
            .context("create the template database")?;
        admin
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {TEMPLATE_DATABASE} FROM PUBLIC"
            ))
            .await
            .context("close the template database")?;
    }
    let applied_steps = migrate_database(server, TEMPLATE_DATABASE, migrations).await?;
    let template = server.connect(TEMPLATE_DATABASE).await?;
    let schema_version = tenant_schema::applied_version(&template)
        .await
        .context("read the template's schema version")?
        .unwrap_or(0);
    drop(template);
    Ok(Prepared {
        schema_version,
        applied_steps,
    })
}

/// Applies pending tenant schema migrations to one database, as the schema owner, and
/// returns how many steps ran. The connection is closed before returning.
pub async fn migrate_database(
    server: &ServerAddress,
    database: &str,
    migrations: &MigrationSet,
) -> Result<usize, ProvisionError> {
    let mut client = server.connect(database).await?;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {SCHEMA_OWNER_ROLE}; \
             REVOKE ALL ON SCHEMA public FROM PUBLIC",
            schema = tenant_schema::SCHEMA
        ))
        .await
        .context("create the tenant schema")?;
    enter_schema(&client).await?;
    let report = migrations.migrate(&mut client).await?;
    Ok(report.applied_migrations().len())
}

/// Installs the extensions the steps use (as the admin), then becomes the schema's owner
/// with the schema on the search path, as every step runs.
async fn enter_schema(client: &tokio_postgres::Client) -> Result<(), ProvisionError> {
    tenant_schema::install_extensions(client)
        .await
        .context("install the extensions the tenant schema uses")?;
    client
        .batch_execute(&format!(
            "SET ROLE {SCHEMA_OWNER_ROLE}; SET search_path = {schema}",
            schema = tenant_schema::SCHEMA
        ))
        .await
        .context("enter the tenant schema as its owner")
}

/// What a live database's migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub applied_steps: usize,
    /// The newest version in the database's own history afterwards.
    pub version: Option<i64>,
}

/// Migrates a database that is in use (a tenant's or a warm one): waits at most
/// `lock_timeout` for each lock rather than queueing everyone behind a long transaction,
/// has the server notice a vanished client within a second (so a killed run's transaction
/// rolls back instead of holding its locks), and applies every pending step in one
/// transaction.
pub async fn migrate_live_database(
    server: &ServerAddress,
    database: &str,
    migrations: &MigrationSet,
    lock_timeout: std::time::Duration,
) -> Result<Migrated, ProvisionError> {
    let mut client = server.connect(database).await?;
    let lock_timeout_ms = i64::try_from(lock_timeout.as_millis()).unwrap_or(i64::MAX);
    client
        .execute(
            "SELECT set_config('lock_timeout', $1, false), \
               CASE WHEN current_setting('server_version_num')::int >= 140000 \
                 THEN set_config('client_connection_check_interval', '1000', false) END",
            &[&lock_timeout_ms.to_string()],
        )
        .await
        .context("set the migration's lock timeout")?;
    enter_schema(&client).await?;
    let report = migrations.migrate(&mut client).await?;
    let version = tenant_schema::applied_version(&client)
        .await
        .context("read the schema version")?;
    Ok(Migrated {
        applied_steps: report.applied_migrations().len(),
        version,
    })
}

/// Quotes an identifier read from the server's own catalog.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
