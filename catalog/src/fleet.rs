//! Fleet migrations: runs, the per-database ledger, and the tenant marks the routers obey.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tenancy_core::{RunId, ServerId, TenantId};

/// Statuses whose databases a run migrates (the others have no database, or are going).
pub const MIGRATED_STATUSES: [&str; 2] = ["active", "suspended"];

/// How a migration run ended (`running` while it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Failed,
    Stopped,
    /// Its process died; the next run closed it.
    Interrupted,
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Interrupted => "interrupted",
        })
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Run {
    pub id: RunId,
    pub target_version: i64,
    pub started_by: String,
    pub options: serde_json::Value,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
}

const RUN_COLUMNS: &str =
    "id, target_version, started_by, options, started_at, finished_at, outcome";

/// The newest run still marked running (the lock holder's, or a dead process's).
pub async fn running(pool: &PgPool) -> Result<Option<Run>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM migration_runs WHERE outcome = 'running' ORDER BY id DESC LIMIT 1"
    ))
    .fetch_optional(pool)
    .await
}

pub async fn last_run(pool: &PgPool) -> Result<Option<Run>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM migration_runs ORDER BY id DESC LIMIT 1"
    ))
    .fetch_optional(pool)
    .await
}

/// The newest runs, newest first.
pub async fn recent_runs(pool: &PgPool, limit: i64) -> Result<Vec<Run>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM migration_runs ORDER BY id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Whether a run says it is running (alive, or dead if the run lock is free).
pub async fn has_running(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM migration_runs WHERE outcome = 'running')")
        .fetch_one(pool)
        .await
}

/// Called with the run lock held: runs still marked running died with their process.
/// Marks them and their unfinished entries interrupted and lifts their tenants' marks
/// (each tenant's steps ran in one transaction, so its database is at the old or the new
/// version, never between; the next run reads which). Returns the runs so closed.
pub async fn close_interrupted(pool: &PgPool) -> Result<Vec<RunId>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let runs: Vec<RunId> = sqlx::query_scalar(
        "UPDATE migration_runs SET outcome = 'interrupted', finished_at = now() \
         WHERE outcome = 'running' RETURNING id",
    )
    .fetch_all(&mut *transaction)
    .await?;
    sqlx::query(
        "UPDATE migration_ledger SET outcome = 'interrupted', finished_at = now(), \
           error = 'the run stopped before this database finished' \
         WHERE outcome = 'running'",
    )
    .execute(&mut *transaction)
    .await?;
    sqlx::query("UPDATE tenants SET migrating_run = NULL WHERE migrating_run IS NOT NULL")
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(runs)
}

pub async fn start_run(
    pool: &PgPool,
    target_version: i64,
    started_by: &str,
    options: &serde_json::Value,
) -> Result<RunId, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO migration_runs (target_version, started_by, options) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(target_version)
    .bind(started_by)
    .bind(options)
    .fetch_one(pool)
    .await
}

pub async fn finish_run(pool: &PgPool, id: RunId, outcome: RunOutcome) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE migration_runs SET outcome = $2, finished_at = now() WHERE id = $1 AND outcome = 'running'",
    )
    .bind(id)
    .bind(outcome)
    .execute(pool)
    .await?;
    Ok(())
}

/// A tenant as the fleet sees it: its database, the version the catalog has recorded, and
/// its newest ledger entry.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FleetTenant {
    pub id: TenantId,
    pub slug: String,
    pub status: crate::tenants::Status,
    pub server_id: ServerId,
    pub server: String,
    pub database_name: String,
    pub schema_version: Option<i64>,
    pub migrating_run: Option<RunId>,
    pub last_run: Option<RunId>,
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
    pub last_finished_at: Option<DateTime<Utc>>,
}

/// Every tenant whose database runs migrate, by server then slug. One query.
pub async fn tenants(pool: &PgPool) -> Result<Vec<FleetTenant>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.slug, t.status, t.server_id, s.name AS server, t.database_name, \
           t.schema_version, t.migrating_run, l.run_id AS last_run, l.outcome AS last_outcome, \
           l.error AS last_error, l.finished_at AS last_finished_at \
         FROM tenants t JOIN database_servers s ON s.id = t.server_id \
         LEFT JOIN LATERAL (SELECT run_id, outcome, error, finished_at FROM migration_ledger \
           WHERE tenant_id = t.id ORDER BY id DESC LIMIT 1) l ON true \
         WHERE t.status = ANY($1) AND t.database_name IS NOT NULL \
         ORDER BY s.name, t.slug",
    )
    .bind(&MIGRATED_STATUSES[..])
    .fetch_all(pool)
    .await
}

/// A ready warm-pool database.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WarmDatabase {
    pub name: String,
    pub server_id: ServerId,
    pub schema_version: Option<i64>,
}

pub async fn warm_databases(pool: &PgPool) -> Result<Vec<WarmDatabase>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, server_id, schema_version FROM warm_databases WHERE ready ORDER BY server_id, name",
    )
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Template,
    Warm,
    Tenant(TenantId),
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Template => "template",
            Self::Warm => "warm",
            Self::Tenant(_) => "tenant",
        }
    }
}

/// Records that a run starts on a database; a tenant is marked migrating in the same
/// transaction (the routers hear of it at once).
pub async fn begin_entry(
    pool: &PgPool,
    run_id: RunId,
    kind: Kind,
    server_id: ServerId,
    database_name: &str,
    from_version: Option<i64>,
) -> Result<i64, sqlx::Error> {
    let tenant_id = match kind {
        Kind::Tenant(id) => Some(id),
        _ => None,
    };
    let mut transaction = pool.begin().await?;
    let entry: i64 = sqlx::query_scalar(
        "INSERT INTO migration_ledger (run_id, kind, tenant_id, server_id, database_name, from_version) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(run_id)
    .bind(kind.as_str())
    .bind(tenant_id)
    .bind(server_id)
    .bind(database_name)
    .bind(from_version)
    .fetch_one(&mut *transaction)
    .await?;
    if let Some(id) = tenant_id {
        sqlx::query("UPDATE tenants SET migrating_run = $2 WHERE id = $1")
            .bind(id)
            .bind(run_id)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(entry)
}

/// How one database's migration ended.
#[derive(Debug, Clone)]
pub enum EntryOutcome {
    /// At `version` now (read from the database itself).
    Succeeded {
        version: Option<i64>,
    },
    Failed {
        error: String,
    },
}

/// Records the end of an entry; for a tenant, its version (on success) and the lifted mark
/// go in the same transaction.
pub async fn finish_entry(
    pool: &PgPool,
    entry: i64,
    kind: Kind,
    outcome: &EntryOutcome,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let (label, version, error) = match outcome {
        EntryOutcome::Succeeded { version } => ("succeeded", *version, None),
        EntryOutcome::Failed { error } => ("failed", None, Some(error.as_str())),
    };
    sqlx::query(
        "UPDATE migration_ledger SET outcome = $2, to_version = $3, error = $4, finished_at = now() \
         WHERE id = $1",
    )
    .bind(entry)
    .bind(label)
    .bind(version)
    .bind(error)
    .execute(&mut *transaction)
    .await?;
    if let Kind::Tenant(id) = kind {
        sqlx::query(
            "UPDATE tenants SET migrating_run = NULL, \
               schema_version = CASE WHEN $2 THEN $3 ELSE schema_version END WHERE id = $1",
        )
        .bind(id)
        .bind(label == "succeeded")
        .bind(version)
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Entries of one run, for its report.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Entry {
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    pub server_id: ServerId,
    pub database_name: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub outcome: String,
    pub error: Option<String>,
}

pub async fn entries(pool: &PgPool, run_id: RunId) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kind, tenant_id, server_id, database_name, from_version, to_version, outcome, error \
         FROM migration_ledger WHERE run_id = $1 ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
}
