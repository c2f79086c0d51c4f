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
    let result = sqlx::query(
        "UPDATE tenants t SET storage_bytes = s.bytes, storage_sampled_at = now(), \
           storage_exceeded = s.bytes > p.max_storage_mb::bigint * 1048576 \
         FROM unnest($2::text[], $3::bigint[]) AS s (name, bytes), plans p \
         WHERE t.server_id = $1 AND t.database_name = s.name AND p.name = t.plan \
           AND t.status IN ('active', 'suspended')",
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
