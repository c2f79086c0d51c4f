//! Usage figures: requests per tenant and hour (added by the routers) and storage samples
//! (taken by the control plane).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tenancy_core::{ServerId, TenantId};

/// Adds request counts; rows are `(tenant, hour, requests)`.
pub async fn add_requests(
    pool: &PgPool,
    rows: &[(TenantId, DateTime<Utc>, i64)],
) -> Result<(), sqlx::Error> {
    let tenants: Vec<TenantId> = rows.iter().map(|row| row.0).collect();
    let hours: Vec<DateTime<Utc>> = rows.iter().map(|row| row.1).collect();
    let counts: Vec<i64> = rows.iter().map(|row| row.2).collect();
    // Tenants deleted meanwhile are skipped (the join), not an error.
    sqlx::query(
        "INSERT INTO usage_requests (tenant_id, hour, requests) \
         SELECT u.tenant_id, u.hour, u.requests \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[]) AS u (tenant_id, hour, requests) \
         JOIN tenants t ON t.id = u.tenant_id \
         ON CONFLICT (tenant_id, hour) DO UPDATE SET requests = usage_requests.requests + EXCLUDED.requests",
    )
    .bind(tenants)
    .bind(hours)
    .bind(counts)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records storage sizes of a server's tenant databases (by database name) and whether each
/// tenant is over its plan's storage limit.
pub async fn record_storage(
    pool: &PgPool,
    server_id: ServerId,
    sizes: &[(String, i64)],
) -> Result<u64, sqlx::Error> {
    let names: Vec<&str> = sizes.iter().map(|size| size.0.as_str()).collect();
    let bytes: Vec<i64> = sizes.iter().map(|size| size.1).collect();
    // The day's sample is kept too (the latest of the day wins), for the size over time.
    let result = sqlx::query(
        "WITH sampled AS ( \
           UPDATE tenants t SET storage_bytes = s.bytes, storage_sampled_at = now(), \
             storage_exceeded = s.bytes > p.max_storage_mb::bigint * 1048576 \
           FROM unnest($2::text[], $3::bigint[]) AS s (name, bytes), plans p \
           WHERE t.server_id = $1 AND t.database_name = s.name AND p.name = t.plan \
             AND t.status IN ('active', 'suspended') \
           RETURNING t.id, t.storage_bytes) \
         INSERT INTO usage_storage (tenant_id, day, bytes) \
         SELECT id, current_date, storage_bytes FROM sampled \
         ON CONFLICT (tenant_id, day) DO UPDATE SET bytes = EXCLUDED.bytes",
    )
    .bind(server_id)
    .bind(names)
    .bind(bytes)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HourlyRequests {
    pub hour: DateTime<Utc>,
    pub requests: i64,
}

/// Request counts of the last `hours` hours, oldest first.
pub async fn hourly_requests(
    pool: &PgPool,
    tenant: TenantId,
    hours: i32,
) -> Result<Vec<HourlyRequests>, sqlx::Error> {
    sqlx::query_as(
        "SELECT hour, requests FROM usage_requests \
         WHERE tenant_id = $1 AND hour > now() - make_interval(hours => $2) ORDER BY hour",
    )
    .bind(tenant)
    .bind(hours)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Storage {
    pub bytes: Option<i64>,
    pub limit_bytes: i64,
    pub exceeded: bool,
    pub sampled_at: Option<DateTime<Utc>>,
}

pub async fn storage(pool: &PgPool, tenant: TenantId) -> Result<Option<Storage>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.storage_bytes AS bytes, p.max_storage_mb::bigint * 1048576 AS limit_bytes, \
           t.storage_exceeded AS exceeded, t.storage_sampled_at AS sampled_at \
         FROM tenants t JOIN plans p ON p.name = t.plan WHERE t.id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

/// Forgets daily size samples older than `days`.
pub async fn prune_storage_history(pool: &PgPool, days: i32) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM usage_storage WHERE day < current_date - $1")
        .bind(days)
        .execute(pool)
        .await?;
    Ok(result.rows_affected())
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DailyStorage {
    pub day: chrono::NaiveDate,
    pub bytes: i64,
}

/// A tenant's size on each of the last `days` days it was sampled, oldest first.
pub async fn storage_history(
    pool: &PgPool,
    tenant: TenantId,
    days: i32,
) -> Result<Vec<DailyStorage>, sqlx::Error> {
    sqlx::query_as(
        "SELECT day, bytes FROM usage_storage \
         WHERE tenant_id = $1 AND day > current_date - $2 ORDER BY day",
    )
    .bind(tenant)
    .bind(days)
    .fetch_all(pool)
    .await
}

/// Sets tenants' user counts (as the routers saw them after a change); rows are
/// `(tenant, users)`.
pub async fn set_users(pool: &PgPool, rows: &[(TenantId, i64)]) -> Result<(), sqlx::Error> {
    let tenants: Vec<TenantId> = rows.iter().map(|row| row.0).collect();
    let counts: Vec<i64> = rows.iter().map(|row| row.1).collect();
    sqlx::query(
        "UPDATE tenants t SET users_count = u.users::integer, users_counted_at = now() \
         FROM unnest($1::uuid[], $2::bigint[]) AS u (tenant_id, users) \
         WHERE t.id = u.tenant_id",
    )
    .bind(tenants)
    .bind(counts)
    .execute(pool)
    .await?;
    Ok(())
}

/// What the portal's tenants table shows of a tenant besides its row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Figures {
    pub tenant_id: TenantId,
    pub users: Option<i32>,
    pub max_users: i32,
    pub storage_bytes: Option<i64>,
    pub limit_bytes: i64,
    /// Since midnight UTC.
    pub requests_today: i64,
    pub last_backup_at: Option<DateTime<Utc>>,
}

/// The figures of these tenants (a page of them: each is a few index lookups).
pub async fn figures(pool: &PgPool, tenants: &[TenantId]) -> Result<Vec<Figures>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id AS tenant_id, t.users_count AS users, p.max_users, \
           t.storage_bytes, p.max_storage_mb::bigint * 1048576 AS limit_bytes, \
           COALESCE((SELECT sum(r.requests) FROM usage_requests r WHERE r.tenant_id = t.id \
             AND r.hour >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0)::bigint \
             AS requests_today, \
           (SELECT b.completed_at FROM backups b WHERE b.tenant_id = t.id AND b.status = 'complete' \
             ORDER BY b.completed_at DESC LIMIT 1) AS last_backup_at \
         FROM tenants t JOIN plans p ON p.name = t.plan WHERE t.id = ANY($1)",
    )
    .bind(tenants)
    .fetch_all(pool)
    .await
}

/// The tenants with the most requests over the last `hours` hours, busiest first.
pub async fn most_active(
    pool: &PgPool,
    hours: i32,
    limit: i64,
) -> Result<Vec<TenantId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT tenant_id FROM usage_requests \
         WHERE hour >= date_trunc('hour', now()) - make_interval(hours => $1) \
         GROUP BY tenant_id ORDER BY sum(requests) DESC LIMIT $2",
    )
    .bind(hours)
    .bind(limit)
    .fetch_all(pool)
    .await
}
