//! The tenant database's schema: `migrations/tenant`, embedded with refinery, and the few
//! typed queries the platform itself runs on a tenant database (the first admin user).
//! It knows no HTTP and issues no DDL outside the migrations, but for the extensions they
//! need ([`install_extensions`]).
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

/// Extensions the migrations use (trigram indexes for search), kept in [`SCHEMA`]. Steps run
/// as the schema owner, who may not create extensions, so the platform's admin installs
/// them first ([`install_extensions`]). Each is in PostgreSQL's standard contrib set.
pub const EXTENSIONS: &[&str] = &["pg_trgm"];

/// Installs [`EXTENSIONS`] into [`SCHEMA`] (which must exist) unless they are there: run as
/// a role that may (the database's owner or a superuser) before migrating.
pub async fn install_extensions(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    for extension in EXTENSIONS {
        client
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS {extension} WITH SCHEMA {SCHEMA}"
            ))
            .await?;
    }
    Ok(())
}

pub use refinery::Report;

/// A set of tenant schema migrations: the ones built into this binary, or the ones in a
/// directory an operator points at (`V{n}__{name}.sql`, as in `migrations/tenant`).
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Vec<refinery::Migration>,
    source: String,
}

/// One step of a [`MigrationSet`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub version: i64,
    pub name: String,
}

/// A step recorded in a database's own refinery history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedStep {
    pub version: i64,
    pub name: String,
    /// Whether the set has this version with the same name and SQL.
    pub matches_set: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("read the tenant migrations in {path}: {source}")]
    Load {
        path: String,
        #[source]
        source: refinery::Error,
    },
    #[error("{path} holds no tenant migrations (files named V<n>__<name>.sql)")]
    Empty { path: String },
    #[error("the tenant migrations in {path} are not an extension of this build's: {reason}")]
    Diverges { path: String, reason: String },
}

impl MigrationSet {
    /// The migrations compiled into this binary (`migrations/tenant`).
    pub fn embedded() -> Self {
        let mut migrations = embedded::migrations::runner().get_migrations().clone();
        migrations.sort();
        Self {
            migrations,
            source: "built in".to_owned(),
        }
    }

    /// The migrations in `path`. They must start with this build's own steps, unchanged:
    /// a directory may add steps, never rewrite the ones tenants already have.
    pub fn from_dir(path: &std::path::Path) -> Result<Self, SetError> {
        let shown = path.display().to_string();
        let mut migrations =
            refinery::load_sql_migrations(path).map_err(|source| SetError::Load {
                path: shown.clone(),
                source,
            })?;
        if migrations.is_empty() {
            return Err(SetError::Empty { path: shown });
        }
        migrations.sort();
        for pair in migrations.windows(2) {
            if pair[0].version() == pair[1].version() {
                return Err(SetError::Diverges {
                    path: shown,
                    reason: format!("version {} appears twice", pair[0].version()),
                });
            }
        }
        for built_in in Self::embedded().migrations {
            match migrations
                .iter()
                .find(|m| m.version() == built_in.version())
            {
                Some(found) if found == &built_in => {}
                Some(found) => {
                    return Err(SetError::Diverges {
                        path: shown,
                        reason: format!("{found} differs from the built-in {built_in}"),
                    });
                }
                None => {
                    return Err(SetError::Diverges {
                        path: shown,
                        reason: format!("{built_in} is missing"),
                    });
                }
            }
        }
        Ok(Self {
            migrations,
            source: shown,
        })
    }

    /// The set in `path` when given, else the built-in one.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, SetError> {
        path.map_or_else(|| Ok(Self::embedded()), Self::from_dir)
    }

    /// Where the set came from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The newest version in the set.
    pub fn latest_version(&self) -> i64 {
        self.migrations
            .iter()
            .map(|migration| i64::from(migration.version()))
            .max()
            .unwrap_or(0)
    }

    /// Every step, oldest first.
    pub fn steps(&self) -> Vec<Step> {
        self.migrations.iter().map(step_of).collect()
    }

    /// The steps a database at `applied` (None: never migrated) still needs.
    pub fn pending_after(&self, applied: Option<i64>) -> Vec<Step> {
        self.migrations
            .iter()
            .filter(|migration| {
                applied.is_none_or(|version| i64::from(migration.version()) > version)
            })
            .map(step_of)
            .collect()
    }

    /// Applies the pending steps on `client`, which must already act as the schema owner
    /// with `search_path` set to [`SCHEMA`]. All pending steps run in one transaction: a
    /// database is either at its old version or at the newest, never in between. Refuses a
    /// database whose history has steps this set lacks or has changed.
    pub async fn migrate(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<Report, refinery::Error> {
        let mut runner = refinery::Runner::new(&self.migrations)
            .set_abort_divergent(true)
            .set_abort_missing(true)
            .set_grouped(true);
        runner.set_migration_table_name(HISTORY_TABLE);
        runner.run_async(client).await
    }

    /// The database's own refinery history, each step compared with this set.
    pub async fn applied_steps(
        &self,
        client: &impl GenericClient,
    ) -> Result<Vec<AppliedStep>, tokio_postgres::Error> {
        if !history_exists(client).await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                "SELECT version::bigint, name, checksum FROM app.refinery_schema_history ORDER BY version",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let version: i64 = row.get(0);
                let name: String = row.get(1);
                let checksum: String = row.get(2);
                let matches_set = self.migrations.iter().any(|migration| {
                    i64::from(migration.version()) == version
                        && migration.name() == name
                        && migration.checksum().to_string() == checksum
                });
                AppliedStep {
                    version,
                    name,
                    matches_set,
                }
            })
            .collect())
    }
}

fn step_of(migration: &refinery::Migration) -> Step {
    Step {
        version: i64::from(migration.version()),
        name: migration.name().to_owned(),
    }
}

/// Applies this build's pending migrations (see [`MigrationSet::migrate`]).
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<Report, refinery::Error> {
    MigrationSet::embedded().migrate(client).await
}

/// The newest version among this build's migrations.
pub fn latest_version() -> i64 {
    MigrationSet::embedded().latest_version()
}

async fn history_exists(client: &impl GenericClient) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2)",
            &[&SCHEMA, &HISTORY_TABLE],
        )
        .await?
        .get(0))
}

/// The newest version applied to the database `client` is connected to, if any.
pub async fn applied_version(
    client: &impl GenericClient,
) -> Result<Option<i64>, tokio_postgres::Error> {
    if !history_exists(client).await? {
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
