//! Pre-warming: when the router starts (and whenever it reconnects to the catalog, having
//! dropped every pool), the tenants with the most requests in the last hours get one
//! connection each, opened before their first request needs it. At most half of each
//! server's budget is spent on it, a few connections at a time, so traffic that arrives
//! meanwhile is not crowded out.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use sqlx::PgPool;
use tenancy_core::ServerId;

use crate::directory::Directory;
use crate::pools::Pools;

/// Hours of request counts that say which tenants are busiest.
const ACTIVITY_HOURS: i32 = 3;
/// Connections opened at once while pre-warming.
const AT_ONCE: usize = 4;

/// Opens one connection for each of the `limit` busiest tenants (within half of each
/// server's budget). Returns how many were opened.
pub async fn prewarm(
    catalog: &PgPool,
    directory: &Directory,
    pools: &Pools,
    limit: usize,
) -> usize {
    if limit == 0 {
        return 0;
    }
    let busiest = match catalog::usage::most_active(
        catalog,
        ACTIVITY_HOURS,
        i64::try_from(limit).unwrap_or(i64::MAX),
    )
    .await
    {
        Ok(ids) => ids,
        Err(error) => {
            tracing::warn!(%error, "pre-warm: read the busiest tenants");
            return 0;
        }
    };
    let mut entries = Vec::new();
    let mut per_server: HashMap<ServerId, u32> = HashMap::new();
    for id in busiest {
        let Ok(Some(entry)) = directory.get(id).await else {
            continue;
        };
        let Some(server) = &entry.server else {
            continue;
        };
        if entry.status != catalog::tenants::Status::Active {
            continue;
        }
        let taken = per_server.entry(server.id).or_default();
        if *taken >= (server.connection_budget / 2).max(1) {
            continue;
        }
        *taken += 1;
        entries.push(entry);
    }
    let opened = futures::stream::iter(entries)
        .map(|entry| async move {
            let pool = pools.pool_for(&entry).ok()?;
            // Taken and given back: it stays open, idle, in the tenant's pool.
            pool.connection(pools).await.ok().map(drop)
        })
        .buffer_unordered(AT_ONCE)
        .filter_map(|opened| async move { opened })
        .count()
        .await;
    tracing::info!(opened, "pre-warmed the busiest tenants");
    opened
}

/// Pre-warms in its own task.
pub fn spawn(catalog: PgPool, directory: Arc<Directory>, pools: Arc<Pools>, limit: usize) {
    tokio::spawn(async move {
        prewarm(&catalog, &directory, &pools, limit).await;
    });
}
