//! Plans (pricing tiers) and their limits.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgExecutor, PgPool, Postgres};
use tenancy_core::PlanName;

/// The limits a plan carries. Every value is validated by [`PlanLimits::check`]
/// and again by the catalog's CHECK constraints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct PlanLimits {
    pub max_users: i32,
    pub max_storage_mb: i64,
    pub requests_per_minute: i32,
    pub max_connections: i32,
    pub statement_timeout_ms: i32,
    pub backup_retention_days: i32,
    /// How often the schedule backs the plan's tenants up (default 24).
    #[serde(default = "default_backup_interval_hours")]
    pub backup_interval_hours: i32,
    pub trial_days: Option<i32>,
}

fn default_backup_interval_hours() -> i32 {
    24
}

/// One invalid field and why, for a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl PlanLimits {
    /// Every limit that is out of range.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut range = |field: &str, value: i64, low: i64, high: i64| {
            if !(low..=high).contains(&value) {
                errors.push(FieldError::new(
                    field,
                    format!("must be between {low} and {high}"),
                ));
            }
        };
        range("max_users", self.max_users.into(), 1, 10_000_000);
        range("max_storage_mb", self.max_storage_mb, 1, 1 << 40);
        range(
            "requests_per_minute",
            self.requests_per_minute.into(),
            1,
            100_000_000,
        );
        range("max_connections", self.max_connections.into(), 1, 1000);
        range(
            "statement_timeout_ms",
            self.statement_timeout_ms.into(),
            100,
            3_600_000,
        );
        range(
            "backup_retention_days",
            self.backup_retention_days.into(),
            1,
            3650,
        );
        range(
            "backup_interval_hours",
            self.backup_interval_hours.into(),
            1,
            8760,
        );
        if let Some(days) = self.trial_days {
            range("trial_days", days.into(), 1, 365);
        }
        errors
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Plan {
    pub name: String,
    pub display_name: String,
    #[sqlx(flatten)]
    pub limits: PlanLimits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "name, display_name, max_users, max_storage_mb, requests_per_minute, \
    max_connections, statement_timeout_ms, backup_retention_days, backup_interval_hours, trial_days, \
    created_at, updated_at";

pub async fn list(pool: &PgPool) -> Result<Vec<Plan>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM plans ORDER BY name"))
        .fetch_all(pool)
        .await
}

/// The plan, locked for update when run inside a transaction that wants to change it.
pub async fn get_for_update(
    executor: impl PgExecutor<'_>,
    name: &PlanName,
) -> Result<Option<Plan>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM plans WHERE name = $1 FOR UPDATE"
    ))
    .bind(name.as_str())
    .fetch_optional(executor)
    .await
}

/// Inserts a plan. A taken name fails on the `plans_pkey` constraint.
pub async fn create(
    executor: impl PgExecutor<'_>,
    name: &PlanName,
    display_name: &str,
    limits: &PlanLimits,
) -> Result<Plan, sqlx::Error> {
    let sql = format!(
        "INSERT INTO plans (name, display_name, max_users, max_storage_mb, requests_per_minute, \
         max_connections, statement_timeout_ms, backup_retention_days, trial_days, \
         backup_interval_hours) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    );
    bind_plan(sqlx::query_as(&sql), name, display_name, limits)
        .fetch_one(executor)
        .await
}

/// Writes a plan's display name and limits.
pub async fn update(
    executor: impl PgExecutor<'_>,
    name: &PlanName,
    display_name: &str,
    limits: &PlanLimits,
) -> Result<Plan, sqlx::Error> {
    let sql = format!(
        "UPDATE plans SET display_name = $2, max_users = $3, max_storage_mb = $4, \
         requests_per_minute = $5, max_connections = $6, statement_timeout_ms = $7, \
         backup_retention_days = $8, trial_days = $9, backup_interval_hours = $10, updated_at = now() \
         WHERE name = $1 RETURNING {COLUMNS}"
    );
    bind_plan(sqlx::query_as(&sql), name, display_name, limits)
        .fetch_one(executor)
        .await
}

/// Binds $1..$10 in the order both statements above use.
fn bind_plan<'q>(
    query: QueryAs<'q, Postgres, Plan, PgArguments>,
    name: &'q PlanName,
    display_name: &'q str,
    limits: &PlanLimits,
) -> QueryAs<'q, Postgres, Plan, PgArguments> {
    query
        .bind(name.as_str())
        .bind(display_name)
        .bind(limits.max_users)
        .bind(limits.max_storage_mb)
        .bind(limits.requests_per_minute)
        .bind(limits.max_connections)
        .bind(limits.statement_timeout_ms)
        .bind(limits.backup_retention_days)
        .bind(limits.trial_days)
        .bind(limits.backup_interval_hours)
}

/// How many live (not deleted) tenants each plan has; plans without any are absent.
pub async fn tenant_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT plan, count(*) FROM tenants WHERE status <> 'deleted' GROUP BY plan")
        .fetch_all(pool)
        .await
}
