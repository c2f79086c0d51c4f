//! Per database server, what every tenant pool on it shares: a semaphore of
//! `connection_budget` permits (each open connection holds one) and a circuit breaker; and
//! the deadpool manager that takes a permit before it connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics as ObjectMetrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::breaker::Breaker;
use crate::tenant::ServerRef;

/// What the router holds per database server.
pub struct ServerGate {
    pub server: ServerRef,
    pub(super) permits: Arc<Semaphore>,
    /// The budget now (the catalog's `connection_budget`; changed without a restart).
    budget: AtomicU32,
    /// Permits the semaphore holds in all, given out or not: the budget once a smaller
    /// budget has taken back what it gave up.
    issued: Arc<AtomicU32>,
    pub breaker: Breaker,
    /// What the metrics report of this server, counted since the router started.
    pub counts: GateCounts,
    /// Connection opens per second, a token bucket holding a second's worth.
    opens: OpenRate,
}

/// A token bucket for connection opens: `rate` per second, at most `rate` at once.
struct OpenRate {
    rate: f64,
    bucket: parking_lot::Mutex<(f64, Instant)>,
}

impl OpenRate {
    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            bucket: parking_lot::Mutex::new((rate, Instant::now())),
        }
    }

    /// Waits for an open's turn, at most `wait`; false: none came in time.
    async fn take(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let pause = {
                let mut bucket = self.bucket.lock();
                let now = Instant::now();
                let refill = now.duration_since(bucket.1).as_secs_f64() * self.rate;
                bucket.0 = (bucket.0 + refill).min(self.rate);
                bucket.1 = now;
                if bucket.0 >= 1.0 {
                    bucket.0 -= 1.0;
                    return true;
                }
                Duration::from_secs_f64((1.0 - bucket.0) / self.rate)
            };
            if Instant::now() + pause > deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// Per server: connections opened, requests that got a connection and how long they
/// waited for it, idle connections of other tenants closed to make room.
#[derive(Debug, Default)]
pub struct GateCounts {
    pub opened: AtomicU64,
    pub checkouts: AtomicU64,
    pub wait_micros: AtomicU64,
    pub evicted: AtomicU64,
}

impl ServerGate {
    pub fn new(server: &ServerRef, opens_per_second: u32) -> Self {
        let budget = server.connection_budget.max(1);
        Self {
            server: server.clone(),
            permits: Arc::new(Semaphore::new(usize::try_from(budget).unwrap_or(1))),
            budget: AtomicU32::new(budget),
            issued: Arc::new(AtomicU32::new(budget)),
            breaker: Breaker::default(),
            counts: GateCounts::default(),
            opens: OpenRate::new(opens_per_second),
        }
    }

    /// Waits (at most `wait`) for the server's rate of connection opens to allow one more.
    pub(super) async fn may_open(&self, wait: Duration) -> bool {
        self.opens.take(wait).await
    }

    /// The connection budget now.
    pub fn budget(&self) -> u32 {
        self.budget.load(Ordering::SeqCst)
    }

    /// Connections the router holds open on this server now.
    pub fn open_connections(&self) -> u32 {
        let available = u32::try_from(self.permits.available_permits()).unwrap_or(0);
        self.issued.load(Ordering::SeqCst).saturating_sub(available)
    }

    /// Applies a new budget. A larger one gives its permits at once; a smaller one takes
    /// permits back as connections close (the caller closes idle ones): until then no new
    /// connection is opened, since the taking waits first in the semaphore's queue.
    /// Returns whether the budget changed.
    pub fn set_budget(&self, budget: u32) -> bool {
        let budget = budget.max(1);
        let old = self.budget.swap(budget, Ordering::SeqCst);
        if budget > old {
            let more = budget - old;
            self.permits.add_permits(usize::try_from(more).unwrap_or(0));
            self.issued.fetch_add(more, Ordering::SeqCst);
        } else if budget < old {
            let fewer = old - budget;
            let permits = self.permits.clone();
            let issued = self.issued.clone();
            tokio::spawn(async move {
                if let Ok(taken) = permits.acquire_many_owned(fewer).await {
                    taken.forget();
                    issued.fetch_sub(fewer, Ordering::SeqCst);
                }
            });
        }
        budget != old
    }
}

/// A pooled connection and the server permit it holds while open.
pub struct GatedClient {
    pub client: ClientWrapper,
    _permit: OwnedSemaphorePermit,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the server's connection budget is spent")]
    Budget,
    #[error("the server's circuit breaker is open")]
    BreakerOpen,
    #[error("connect: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

pub struct GatedManager {
    pub(super) inner: deadpool_postgres::Manager,
    pub(super) gate: Arc<ServerGate>,
    pub(super) wait: Duration,
}

impl managed::Manager for GatedManager {
    type Type = GatedClient;
    type Error = ConnectError;

    async fn create(&self) -> Result<GatedClient, ConnectError> {
        if self.gate.breaker.is_open() {
            return Err(ConnectError::BreakerOpen);
        }
        let permit = tokio::time::timeout(self.wait, self.gate.permits.clone().acquire_owned())
            .await
            .map_err(|_| ConnectError::Budget)?
            .map_err(|_| ConnectError::Budget)?;
        // The server's rate of opens; a request waits for it within its own bounded wait.
        if !self.gate.may_open(self.wait).await {
            return Err(ConnectError::Budget);
        }
        match managed::Manager::create(&self.inner).await {
            Ok(client) => {
                self.gate.breaker.success();
                self.gate.counts.opened.fetch_add(1, Ordering::Relaxed);
                Ok(GatedClient {
                    client,
                    _permit: permit,
                })
            }
            Err(error) => {
                if error.as_db_error().is_none() {
                    self.gate.breaker.failure();
                }
                Err(error.into())
            }
        }
    }

    async fn recycle(
        &self,
        object: &mut GatedClient,
        metrics: &ObjectMetrics,
    ) -> RecycleResult<ConnectError> {
        managed::Manager::recycle(&self.inner, &mut object.client, metrics)
            .await
            .map_err(|error| match error {
                RecycleError::Message(message) => RecycleError::Message(message),
                RecycleError::Backend(error) => RecycleError::Backend(error.into()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_come_at_the_rate_after_a_seconds_worth() {
        let rate = OpenRate::new(20);
        for _ in 0..20 {
            assert!(rate.take(Duration::ZERO).await, "a second's worth at once");
        }
        assert!(
            !rate.take(Duration::from_millis(10)).await,
            "the next one is 50 ms away"
        );
        let started = Instant::now();
        assert!(rate.take(Duration::from_secs(1)).await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(25) && waited < Duration::from_millis(500),
            "{waited:?}"
        );
    }
}
