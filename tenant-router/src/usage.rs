//! Request counts per tenant and hour, kept in memory and added to the catalog every few
//! seconds (one statement for all tenants), and the user count of each tenant whose users
//! changed since (the portal shows it without opening tenant databases). A failed flush
//! keeps what it had for the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use parking_lot::Mutex;
use sqlx::PgPool;
use tenancy_core::TenantId;
use tokio::task::JoinHandle;

/// (tenant, hour) counts kept at most while flushes fail.
const MAX_PENDING: usize = 500_000;

#[derive(Default)]
pub struct UsageCounter {
    counts: Mutex<HashMap<(TenantId, DateTime<Utc>), i64>>,
    /// The latest user count of each tenant whose users changed since the last flush.
    users: Mutex<HashMap<TenantId, i64>>,
}

impl UsageCounter {
    pub fn record(&self, tenant: TenantId) {
        let hour = Utc::now()
            .duration_trunc(TimeDelta::hours(1))
            .unwrap_or_else(|_| Utc::now());
        *self.counts.lock().entry((tenant, hour)).or_default() += 1;
    }

    /// Remembers a tenant's user count after a committed change; a later count replaces it.
    pub fn record_users(&self, tenant: TenantId, users: i64) {
        self.users.lock().insert(tenant, users);
    }

    fn drain(&self) -> Vec<(TenantId, DateTime<Utc>, i64)> {
        self.counts
            .lock()
            .drain()
            .map(|((tenant, hour), count)| (tenant, hour, count))
            .collect()
    }

    /// Puts back counts a failed flush could not add, while the catalog is unreachable: up
    /// to [`MAX_PENDING`] (tenant, hour) counts are kept; beyond, the rest are dropped (and
    /// said in the log) rather than grow without bound.
    fn restore(&self, rows: Vec<(TenantId, DateTime<Utc>, i64)>) {
        let mut counts = self.counts.lock();
        let mut dropped = 0_u64;
        for (tenant, hour, count) in rows {
            if counts.len() >= MAX_PENDING && !counts.contains_key(&(tenant, hour)) {
                dropped += 1;
                continue;
            }
            *counts.entry((tenant, hour)).or_default() += count;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "request counts dropped: the catalog has been unreachable for long"
            );
        }
    }

    /// Adds what was counted since the last flush to the catalog.
    pub async fn flush(&self, catalog: &PgPool) {
        let rows = self.drain();
        if !rows.is_empty()
            && let Err(error) = catalog::usage::add_requests(catalog, &rows).await
        {
            tracing::warn!(%error, "flush request counts; keeping them for the next flush");
            self.restore(rows);
        }
        let users: Vec<(TenantId, i64)> = self.users.lock().drain().collect();
        if !users.is_empty()
            && let Err(error) = catalog::usage::set_users(catalog, &users).await
        {
            tracing::warn!(%error, "flush user counts; keeping them for the next flush");
            let mut kept = self.users.lock();
            for (tenant, count) in users {
                // A count recorded meanwhile is newer.
                kept.entry(tenant).or_insert(count);
            }
        }
    }
}

pub fn spawn_flusher(
    counter: Arc<UsageCounter>,
    catalog: PgPool,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            counter.flush(&catalog).await;
        }
    })
}
