//! A tenant's role and database: create (idempotently, step by step), limit, drop, list;
//! [`quarantine`] for the sweep, [`restore`] for restores.

use secrecy::{ExposeSecret, SecretString};
use tenancy_core::TenantId;
use tokio_postgres::Client;

use crate::mark::{self, Installation, Mark};
use crate::names::{DatabaseName, RoleName, SCHEMA_OWNER_ROLE, TEMPLATE_DATABASE};
use crate::server::ServerAddress;
use crate::template::TEMPLATE_LOCK;
use crate::{Context, ProvisionError};

mod quarantine;
mod restore;

pub use quarantine::{quarantine_database, quarantine_role, release_database, release_role};
pub use restore::{
    create_restore_target, fence_database, finish_restored_database, open_database, retire_database,
};

/// The plan's limits that PostgreSQL enforces on the tenant's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleLimits {
    pub max_connections: i32,
    pub statement_timeout_ms: i32,
}

/// Creates the tenant's login role, or brings an existing one (a re-run) to the given
/// password and limits. The password is sent as a SCRAM verifier, never in clear, so it
/// cannot appear in the server's statement log; a machine-generated password's verifier
/// has few iterations, so the router's connections are cheap ([`crate::scram`]). A new role carries `owner`'s mark from the
/// statement that creates it; an existing one without a mark (a re-run) gets it.
pub async fn ensure_role(
    admin: &Client,
    tenant: TenantId,
    password: &SecretString,
    limits: RoleLimits,
    owner: Installation,
) -> Result<(), ProvisionError> {
    let role = RoleName::for_tenant(tenant);
    let verifier = crate::scram::verifier(password.expose_secret());
    let exists = role_exists(admin, &role).await?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    // The verifier is made of base64 and `$:=-` characters; it cannot close the literal.
    // Both statements run in one implicit transaction: no role exists without its mark.
    let mark_statement = if exists {
        String::new()
    } else {
        format!("; {}", mark::comment_on_role(&role, &Mark::new(owner)))
    };
    admin
        .batch_execute(&format!(
            "{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT \
             NOREPLICATION NOBYPASSRLS PASSWORD '{verifier}'{mark_statement}",
            role = role.ident()
        ))
        .await
        .context("create the tenant role")?;
    if exists && mark::role_mark(admin, &role).await?.is_none() {
        mark::mark_role(admin, &role, &Mark::new(owner)).await?;
    }
    apply_limits(admin, tenant, limits).await
}

/// Sets the plan's limits on the tenant's role: they apply to new sessions at once.
pub async fn apply_limits(
    admin: &Client,
    tenant: TenantId,
    limits: RoleLimits,
) -> Result<(), ProvisionError> {
    let role = RoleName::for_tenant(tenant).ident();
    // The plan's connections for the router's pool, and one for its events listener.
    let max_connections = limits.max_connections.max(1).saturating_add(1);
    let timeout = limits.statement_timeout_ms.max(1);
    admin
        .batch_execute(&format!(
            "ALTER ROLE {role} CONNECTION LIMIT {max_connections}; \
             ALTER ROLE {role} SET statement_timeout = {timeout}; \
             ALTER ROLE {role} SET search_path = {schema}",
            schema = tenant_schema::SCHEMA
        ))
        .await
        .context("set the tenant role's limits")
}

/// Clones the template into the tenant's database unless it exists; only the tenant's role
/// (and the admin) may connect to it. Returns whether it was created now. It carries
/// `owner`'s mark (one left without it by a crash after the clone gets it now).
pub async fn ensure_database(
    admin: &Client,
    tenant: TenantId,
    owner: Installation,
) -> Result<bool, ProvisionError> {
    let database = DatabaseName::for_tenant(tenant);
    let created = if database_exists(admin, &database).await? {
        false
    } else {
        clone_template(admin, &database).await?;
        true
    };
    if created || mark::database_mark(admin, &database).await?.is_none() {
        mark::mark_database(admin, &database, &Mark::new(owner)).await?;
    }
    close_database(admin, &database, tenant).await?;
    Ok(created)
}

/// `CREATE DATABASE … TEMPLATE`, under the shared template lock: the template cannot be
/// cloned while it is being migrated (anyone connected to it makes the clone fail).
async fn clone_template(admin: &Client, database: &DatabaseName) -> Result<(), ProvisionError> {
    admin
        .execute("SELECT pg_advisory_lock_shared($1)", &[&TEMPLATE_LOCK])
        .await
        .context("take the template lock (shared)")?;
    let cloned = admin
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {TEMPLATE_DATABASE} STRATEGY WAL_LOG",
            database.ident()
        ))
        .await
        .context("clone the template database");
    let _ = admin
        .execute("SELECT pg_advisory_unlock_shared($1)", &[&TEMPLATE_LOCK])
        .await;
    cloned
}

/// Moves a warm (pre-cloned) database to a tenant by renaming it. Returns false when the
/// warm database is gone (another provisioning took it).
pub async fn adopt_warm_database(
    admin: &Client,
    warm: &DatabaseName,
    tenant: TenantId,
) -> Result<bool, ProvisionError> {
    if !database_exists(admin, warm).await? {
        return Ok(false);
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            warm.ident(),
            DatabaseName::for_tenant(tenant).ident()
        ))
        .await
        .context("rename a warm database for a tenant")?;
    close_database(admin, &DatabaseName::for_tenant(tenant), tenant).await?;
    Ok(true)
}

/// Clones the template into a new warm database `warm` (named by [`DatabaseName::warm`]),
/// for a tenant to take later.
pub async fn create_warm_database(
    admin: &Client,
    warm: &DatabaseName,
    owner: Installation,
) -> Result<(), ProvisionError> {
    clone_template(admin, warm).await?;
    mark::mark_database(admin, warm, &Mark::new(owner)).await?;
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {} FROM PUBLIC",
            warm.ident()
        ))
        .await
        .context("close a warm database")?;
    Ok(())
}

async fn close_database(
    admin: &Client,
    database: &DatabaseName,
    tenant: TenantId,
) -> Result<(), ProvisionError> {
    let database = database.ident();
    let role = RoleName::for_tenant(tenant).ident();
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {database} FROM PUBLIC; \
             GRANT CONNECT ON DATABASE {database} TO {role}"
        ))
        .await
        .context("restrict who may connect to the tenant database")
}

/// Inside the tenant's database: the tenant role may read and write the application's
/// tables (and those of later migrations) but own nothing, create nothing, and only append
/// to the audit log; then the first admin user. One transaction.
pub async fn configure_database(
    server: &ServerAddress,
    tenant: TenantId,
    first_admin: Option<(&str, &str)>,
) -> Result<Option<i64>, ProvisionError> {
    let database = DatabaseName::for_tenant(tenant);
    let mut client = server.connect(database.as_str()).await?;
    let transaction = client
        .transaction()
        .await
        .context("begin configuring the tenant database")?;
    grant_privileges(&transaction, tenant).await?;
    if let Some((email, password_hash)) = first_admin {
        tenant_schema::create_first_admin(&transaction, email, password_hash)
            .await
            .context("create the tenant's first admin user")?;
    }
    let version = tenant_schema::applied_version(&transaction)
        .await
        .context("read the tenant's schema version")?;
    transaction
        .commit()
        .await
        .context("commit the tenant database's configuration")?;
    Ok(version)
}

/// The tenant role's privileges on the application's tables, in the database `client` is
/// connected to (as the server admin).
async fn grant_privileges(
    client: &impl tokio_postgres::GenericClient,
    tenant: TenantId,
) -> Result<(), ProvisionError> {
    let role = RoleName::for_tenant(tenant).ident();
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA {schema} TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}; \
             REVOKE INSERT, UPDATE, DELETE ON {schema}.{history}, {schema}.permissions FROM {role}; \
             REVOKE UPDATE, DELETE ON {schema}.audit_log FROM {role}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {SCHEMA_OWNER_ROLE} IN SCHEMA {schema} \
               GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {SCHEMA_OWNER_ROLE} IN SCHEMA {schema} \
               GRANT USAGE, SELECT ON SEQUENCES TO {role}",
            schema = tenant_schema::SCHEMA,
            history = tenant_schema::HISTORY_TABLE,
        ))
        .await
        .context("grant the tenant role its privileges")
}

/// Drops the tenant's databases (ending their sessions) and role, each only if it carries
/// `owner`'s mark: an object without it is refused with [`ProvisionError::NotOurs`] and
/// left as it is. Idempotent.
pub async fn drop_tenant(
    admin: &Client,
    tenant: TenantId,
    owner: Installation,
) -> Result<(), ProvisionError> {
    let database = DatabaseName::for_tenant(tenant);
    let role = RoleName::for_tenant(tenant);
    let role_exists = role_exists(admin, &role).await?;
    if role_exists {
        check_role_owner(admin, &role, owner).await?;
    }
    // Its database, and any restored copy of it.
    let names: Vec<DatabaseName> = admin
        .query(
            "SELECT datname FROM pg_database WHERE datname = $1 OR datname LIKE $1 || '\\_%'",
            &[&database.as_str()],
        )
        .await
        .context("list the tenant's databases")?
        .iter()
        .filter_map(|row| DatabaseName::parse(row.get(0)))
        .filter(|name| name.tenant() == Some(tenant))
        .collect();
    for name in &names {
        check_database_owner(admin, name, owner).await?;
    }
    if role_exists {
        admin
            .batch_execute(&format!("ALTER ROLE {} NOLOGIN", role.ident()))
            .await
            .context("stop new logins of the tenant role")?;
    }
    for name in &names {
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                name.ident()
            ))
            .await
            .context("drop the tenant database")?;
    }
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", role.ident()))
        .await
        .context("drop the tenant role")
}

/// Drops a database (ending its sessions) if it carries `owner`'s mark; a database without
/// it is refused with [`ProvisionError::NotOurs`]. Idempotent.
pub async fn drop_database(
    admin: &Client,
    database: &DatabaseName,
    owner: Installation,
) -> Result<(), ProvisionError> {
    if !database_exists(admin, database).await? {
        return Ok(());
    }
    check_database_owner(admin, database, owner).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            database.ident()
        ))
        .await
        .context("drop a database")
}

/// Drops a tenant role if it carries `owner`'s mark. Idempotent.
pub async fn drop_role(
    admin: &Client,
    role: &RoleName,
    owner: Installation,
) -> Result<(), ProvisionError> {
    if !role_exists(admin, role).await? {
        return Ok(());
    }
    check_role_owner(admin, role, owner).await?;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", role.ident()))
        .await
        .context("drop a role")
}

async fn check_database_owner(
    admin: &Client,
    database: &DatabaseName,
    owner: Installation,
) -> Result<(), ProvisionError> {
    match mark::database_mark(admin, database).await? {
        Some(mark) if mark.is_of(owner) => Ok(()),
        _ => Err(ProvisionError::NotOurs {
            object: format!("database {database}"),
        }),
    }
}

async fn check_role_owner(
    admin: &Client,
    role: &RoleName,
    owner: Installation,
) -> Result<(), ProvisionError> {
    match mark::role_mark(admin, role).await? {
        Some(mark) if mark.is_of(owner) => Ok(()),
        _ => Err(ProvisionError::NotOurs {
            object: format!("role {role}"),
        }),
    }
}

/// A tenant or warm database present on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseObject {
    pub name: DatabaseName,
    /// Its ownership mark, if its comment carries one.
    pub mark: Option<Mark>,
    pub allows_connections: bool,
    /// Sessions connected to it now (other than the lister's).
    pub sessions: i64,
}

/// A tenant role present on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleObject {
    pub name: RoleName,
    pub mark: Option<Mark>,
    pub can_login: bool,
}

/// The tenant and warm databases and the tenant roles present on a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantObjects {
    pub databases: Vec<DatabaseObject>,
    pub roles: Vec<RoleObject>,
}

pub async fn list_objects(admin: &Client) -> Result<TenantObjects, ProvisionError> {
    let databases = admin
        .query(
            "SELECT d.datname, shobj_description(d.oid, 'pg_database'), d.datallowconn, \
               (SELECT count(*) FROM pg_stat_activity a \
                 WHERE a.datid = d.oid AND a.pid <> pg_backend_pid()) \
             FROM pg_database d ORDER BY d.datname",
            &[],
        )
        .await
        .context("list databases")?
        .iter()
        .filter_map(|row| {
            DatabaseName::parse(row.get(0)).map(|name| DatabaseObject {
                name,
                mark: row
                    .get::<_, Option<String>>(1)
                    .as_deref()
                    .and_then(Mark::parse),
                allows_connections: row.get(2),
                sessions: row.get(3),
            })
        })
        .collect();
    let roles = admin
        .query(
            "SELECT rolname, shobj_description(oid, 'pg_authid'), rolcanlogin \
             FROM pg_roles ORDER BY rolname",
            &[],
        )
        .await
        .context("list roles")?
        .iter()
        .filter_map(|row| {
            RoleName::parse(row.get(0)).map(|name| RoleObject {
                name,
                mark: row
                    .get::<_, Option<String>>(1)
                    .as_deref()
                    .and_then(Mark::parse),
                can_login: row.get(2),
            })
        })
        .collect();
    Ok(TenantObjects { databases, roles })
}

async fn role_exists(admin: &Client, role: &RoleName) -> Result<bool, ProvisionError> {
    admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role.as_str()],
        )
        .await
        .map(|row| row.get(0))
        .context("look for the tenant role")
}

/// Whether the tenant's database exists on the server.
pub async fn tenant_database_exists(
    admin: &Client,
    tenant: TenantId,
) -> Result<bool, ProvisionError> {
    database_exists(admin, &DatabaseName::for_tenant(tenant)).await
}

/// Whether a database of that name exists on the server.
pub async fn database_exists(
    admin: &Client,
    database: &DatabaseName,
) -> Result<bool, ProvisionError> {
    admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&database.as_str()],
        )
        .await
        .map(|row| row.get(0))
        .context("look for the tenant database")
}
