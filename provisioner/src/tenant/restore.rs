//! A tenant's databases around a restore: the empty target, its grants once filled, the
//! fence around the database being replaced, and its retirement (renamed, closed, kept).

use tokio_postgres::Client;

use super::{close_database, grant_privileges};
use crate::mark::{self, Installation, Mark};
use crate::names::{DatabaseName, RoleName, SCHEMA_OWNER_ROLE};
use crate::server::ServerAddress;
use crate::{Context, ProvisionError};
use tenancy_core::TenantId;

/// Lets the tenant's role connect to `database` again (after [`fence_database`]).
pub async fn open_database(
    admin: &Client,
    database: &DatabaseName,
    tenant: TenantId,
) -> Result<(), ProvisionError> {
    close_database(admin, database, tenant).await
}

/// Stops the tenant's role from reaching `database`: no new connections, then (after the
/// sessions in a request or transaction finished, `drain` at most) every session of the
/// role there ends. Nothing the role does afterwards lands in this database.
pub async fn fence_database(
    admin: &Client,
    database: &DatabaseName,
    tenant: TenantId,
    drain: std::time::Duration,
) -> Result<(), ProvisionError> {
    let role = RoleName::for_tenant(tenant);
    admin
        .batch_execute(&format!(
            "REVOKE CONNECT ON DATABASE {} FROM {}",
            database.ident(),
            role.ident()
        ))
        .await
        .context("revoke the tenant role's CONNECT")?;
    let deadline = tokio::time::Instant::now() + drain;
    loop {
        let busy: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2 \
                 AND state IS DISTINCT FROM 'idle'",
                &[&database.as_str(), &role.as_str()],
            )
            .await
            .context("look for the tenant role's sessions")?
            .get(0);
        if busy == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND usename = $2",
            &[&database.as_str(), &role.as_str()],
        )
        .await
        .context("end the tenant role's sessions")?;
    Ok(())
}

/// Retires a database a restore replaced: nobody may connect to it (but the admin), its
/// sessions end, and it is renamed to `kept`, where it waits to be dropped.
pub async fn retire_database(
    admin: &Client,
    database: &DatabaseName,
    kept: &DatabaseName,
    tenant: TenantId,
) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {database} FROM PUBLIC; \
             REVOKE CONNECT ON DATABASE {database} FROM {role}",
            database = database.ident(),
            role = RoleName::for_tenant(tenant).ident()
        ))
        .await
        .context("close a replaced database")?;
    let mut attempts = 0;
    loop {
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database.as_str()],
            )
            .await
            .context("end the sessions on a replaced database")?;
        let renamed = admin
            .batch_execute(&format!(
                "ALTER DATABASE {} RENAME TO {}",
                database.ident(),
                kept.ident()
            ))
            .await;
        match renamed {
            Ok(()) => return Ok(()),
            // 55006: somebody connected meanwhile; end them again.
            Err(error)
                if attempts < 10 && error.code().is_some_and(|code| code.code() == "55006") =>
            {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(ProvisionError::Database {
                    action: "rename a replaced database",
                    source,
                });
            }
        }
    }
}

/// An empty database for a restore of the tenant's backup: only the admin may connect
/// until [`finish_restored_database`]; the schema owner may create the schema in it.
pub async fn create_restore_target(
    admin: &Client,
    database: &DatabaseName,
    owner: Installation,
) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {database} TEMPLATE template0",
            database = database.ident()
        ))
        .await
        .context("create the database to restore into")?;
    mark::mark_database(admin, database, &Mark::new(owner)).await?;
    admin
        .batch_execute(&format!(
            "REVOKE ALL ON DATABASE {database} FROM PUBLIC; \
             GRANT CREATE ON DATABASE {database} TO {SCHEMA_OWNER_ROLE}",
            database = database.ident()
        ))
        .await
        .context("prepare the database to restore into")
}

/// What a restored database holds, read as it is finished.
#[derive(Debug, Clone, Copy)]
pub struct RestoredDatabase {
    pub schema_version: Option<i64>,
    /// The tenant's users (for the catalog's figures).
    pub users: i64,
}

/// After `pg_restore`: the tenant role's privileges (as at provisioning), the schema
/// owner's CREATE on the database taken back, PUBLIC shut out of `public`, and the tenant
/// role allowed to connect. Returns the restored schema version and user count.
pub async fn finish_restored_database(
    server: &ServerAddress,
    admin: &Client,
    database: &DatabaseName,
    tenant: TenantId,
) -> Result<RestoredDatabase, ProvisionError> {
    let mut client = server.connect(database.as_str()).await?;
    let transaction = client
        .transaction()
        .await
        .context("begin configuring the restored database")?;
    transaction
        .batch_execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        .await
        .context("close the public schema")?;
    grant_privileges(&transaction, tenant).await?;
    let version = tenant_schema::applied_version(&transaction)
        .await
        .context("read the restored schema version")?;
    // Every schema version has had `app.users` (step 1).
    let users: i64 = transaction
        .query_one("SELECT count(*) FROM app.users", &[])
        .await
        .context("count the restored database's users")?
        .get(0);
    transaction
        .commit()
        .await
        .context("commit the restored database's configuration")?;
    drop(client);
    admin
        .batch_execute(&format!(
            "REVOKE CREATE ON DATABASE {} FROM {SCHEMA_OWNER_ROLE}",
            database.ident()
        ))
        .await
        .context("take back CREATE on the restored database")?;
    close_database(admin, database, tenant).await?;
    Ok(RestoredDatabase {
        schema_version: version,
        users,
    })
}
