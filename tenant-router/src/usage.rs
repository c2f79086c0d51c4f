//! Request counts per tenant and hour, kept in memory and added to the catalog every few
//! seconds (one statement for all tenants). A failed flush keeps its counts for the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use parking_lot::Mutex;
use sqlx::PgPool;
use tenancy_core::TenantId;
use tokio::task::JoinHandle;

#[derive(Default)]
pub struct UsageCounter {
    counts: Mutex<HashMap<(TenantId, DateTime<Utc>), i64>>,
}

impl UsageCounter {
    pub fn record(&self, tenant: TenantId) {
        let hour = Utc::now()
            .duration_trunc(TimeDelta::hours(1))
            .unwrap_or_else(|_| Utc::now());
        *self.counts.lock().entry((tenant, hour)).or_default() += 1;
    }

    fn drain(&self) -> Vec<(TenantId, DateTime<Utc>, i64)> {
        self.counts
            .lock()
            .drain()
            .map(|((tenant, hour), count)| (tenant, hour, count))
            .collect()
    }

    fn restore(&self, rows: Vec<(TenantId, DateTime<Utc>, i64)>) {
        let mut counts = self.counts.lock();
        for (tenant, hour, count) in rows {
            *counts.entry((tenant, hour)).or_default() += count;
        }
    }

    /// Adds what was counted since the last flush to the catalog.
    pub async fn flush(&self, catalog: &PgPool) {
        let rows = self.drain();
        if rows.is_empty() {
            return;
        }
        if let Err(error) = catalog::usage::add_requests(catalog, &rows).await {
            tracing::warn!(%error, "flush request counts; keeping them for the next flush");
            self.restore(rows);
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
