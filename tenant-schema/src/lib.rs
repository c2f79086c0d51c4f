//! The tenant database's schema: `migrations/tenant`, embedded with refinery, and the few
//! typed queries the platform itself runs on a tenant database (the first admin user).
//! It knows no HTTP and issues no DDL outside the migrations.
//!
//! Tables live in the schema [`SCHEMA`], owned by a role that nobody logs in as; the
//! tenant's own role only gets DML on them (see the provisioner).

use tokio_postgres::GenericClient;
use uuid::Uuid;

mod embedded {
    refinery::embed_migrations!("../migrations/tenant");
}

/// The schema that holds the tenant's tables.
pub const SCHEMA: &str = "app";
/// refinery's history table, inside [`SCHEMA`].
pub const HISTORY_TABLE: &str = "refinery_schema_history";

pub use refinery::Report;

/// Applies pending migrations on `client`, which must already act as the schema owner with
/// `search_path` set to [`SCHEMA`]. Each step runs in its own transaction.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Report, refinery::Error> {
    let mut runner = embedded::migrations::runner().set_abort_divergent(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    runner.run_async(client).await
}

/// The newest version among the embedded migrations.
pub fn latest_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| i64::from(migration.version()))
        .max()
        .unwrap_or(0)
}

/// The newest version applied to the database `client` is connected to, if any.
pub async fn applied_version(
    client: &impl GenericClient,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2)",
            &[&SCHEMA, &HISTORY_TABLE],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(
            "SELECT max(version)::bigint FROM app.refinery_schema_history",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Creates the tenant's first user with the `admin` role (every permission). Idempotent:
/// a user with that e-mail is kept and given the role.
pub async fn create_first_admin(
    client: &impl GenericClient,
    email: &str,
    password_hash: &str,
) -> Result<Uuid, tokio_postgres::Error> {
    let row = client
        .query_one(
            "WITH inserted AS ( \
               INSERT INTO app.users (email, display_name, password_hash) VALUES ($1, 'Administrator', $2) \
               ON CONFLICT (email) DO NOTHING RETURNING id) \
             SELECT id FROM inserted UNION ALL SELECT id FROM app.users WHERE email = $1 LIMIT 1",
            &[&email, &password_hash],
        )
        .await?;
    let user_id: Uuid = row.get(0);
    client
        .execute(
            "INSERT INTO app.user_roles (user_id, role_id) \
             SELECT $1, id FROM app.roles WHERE name = 'admin' AND is_system \
             ON CONFLICT DO NOTHING",
            &[&user_id],
        )
        .await?;
    Ok(user_id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_migrations_are_found() {
        assert!(super::latest_version() >= 1);
    }
}
