//! What backups need on a server: a login role for one `pg_dump`, able to read one
//! database and nothing else, gone afterwards.

use secrecy::SecretString;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::names::DatabaseName;
use crate::{Context, ProvisionError};

/// Prefix of the short-lived roles `pg_dump` logs in as.
const READER_PREFIX: &str = "tenancy_backup_";

/// A role that may read every table of one database (through `pg_read_all_data`), connect
/// to that database only (PUBLIC may connect to none), write nothing, and log in for an
/// hour at most.
pub struct ReaderRole {
    pub name: String,
    pub password: SecretString,
}

impl std::fmt::Debug for ReaderRole {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReaderRole")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Creates a reader for `database` (and drops readers left by runs that died).
pub async fn create_reader(
    admin: &Client,
    database: &DatabaseName,
) -> Result<ReaderRole, ProvisionError> {
    drop_expired_readers(admin).await?;
    let name = format!("{READER_PREFIX}{}", Uuid::new_v4().simple());
    let password = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let verifier = crate::scram::verifier(&password);
    // The verifier is made of base64 and `$:=-` characters; it cannot close the literal.
    admin
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
               NOBYPASSRLS CONNECTION LIMIT 2 PASSWORD '{verifier}' \
               VALID UNTIL '{until}' IN ROLE pg_read_all_data; \
             GRANT CONNECT ON DATABASE {database} TO {name}",
            until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            database = database.ident(),
        ))
        .await
        .context("create a backup reader role")?;
    Ok(ReaderRole {
        name,
        password: SecretString::from(password),
    })
}

/// Drops a reader and its grants. Idempotent.
pub async fn drop_reader(admin: &Client, reader: &ReaderRole) -> Result<(), ProvisionError> {
    drop_role(admin, &reader.name).await
}

async fn drop_role(admin: &Client, name: &str) -> Result<(), ProvisionError> {
    let exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&name],
        )
        .await
        .context("look for a backup reader role")?
        .get(0);
    if exists {
        // DROP OWNED also revokes its CONNECT grant (databases are shared objects).
        admin
            .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
            .await
            .context("drop a backup reader role")?;
    }
    Ok(())
}

async fn drop_expired_readers(admin: &Client) -> Result<(), ProvisionError> {
    let rows = admin
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname ~ '^tenancy_backup_[0-9a-f]{32}$' \
             AND rolvaliduntil < now()",
            &[],
        )
        .await
        .context("list expired backup reader roles")?;
    for row in rows {
        let name: String = row.get(0);
        drop_role(admin, &name).await?;
    }
    Ok(())
}
