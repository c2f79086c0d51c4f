//! The router's connections to tenant databases: per database server a scheduler
//! ([`ServerPool`]) shares the server's connection budget among its tenants (warm
//! connections kept for the busiest, fair waiting, frequency-aware eviction), with a circuit
//! breaker and a cap on connection opens per second; per tenant a handle ([`TenantPool`])
//! bound to where its database is now.

mod breaker;
mod maintenance;
mod rate;
mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use secrecy::ExposeSecret;
use tenancy_core::{ServerId, TenantId};

pub use breaker::Breaker;
pub use maintenance::spawn_maintenance;
pub use server::{Connection, Reservation, ServerPool, Target};

use crate::error::{RouterError, RouterResult};
use crate::metrics::PoolStats;
use crate::tenant::TenantEntry;

/// How fast a router opens connections to one server.
#[derive(Debug, Clone, Copy)]
pub struct OpenLimits {
    /// Per second at most.
    pub per_second: u32,
    /// At once at most.
    pub at_once: u32,
}

/// A tenant's way to its connections.
pub struct TenantPool {
    pub tenant: TenantId,
    pub server: Arc<ServerPool>,
    /// Where its connections go and as whom: a handle serves only entries that agree.
    target: Arc<Target>,
    /// The directory entry it was made for (a request with that same entry skips the
    /// comparison).
    entry: std::sync::Weak<TenantEntry>,
    /// Connections the tenant may hold at once.
    max: usize,
    /// Milliseconds since the router's start when it was last used.
    last_used: AtomicU64,
}

/// A connection outside the pool (for `LISTEN`), and the place in the server's budget it
/// holds while open.
pub struct Dedicated {
    pub client: tokio_postgres::Client,
    pub connection:
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    pub permit: Reservation,
}

fn matches(target: &Target, entry: &TenantEntry) -> bool {
    entry.server.as_ref() == Some(&target.server)
        && entry.database.as_deref() == Some(target.database.as_str())
        && entry.role.as_deref() == Some(target.role.as_str())
        && entry.password.as_ref().map(ExposeSecret::expose_secret)
            == Some(target.password.expose_secret())
}

impl TenantPool {
    /// A connection, waiting at most the configured time.
    pub async fn connection(&self, pools: &Pools) -> RouterResult<Connection> {
        self.last_used.store(pools.now_millis(), Ordering::Relaxed);
        self.server
            .checkout(self.tenant, &self.target, self.max)
            .await
    }

    /// A connection of the tenant's own, outside its pooled ones but within the server's
    /// budget (it holds a place while open) and the breaker.
    pub async fn dedicated(&self) -> RouterResult<Dedicated> {
        let permit = self.server.reserve(self.tenant).await?;
        let (client, connection) = self.server.connect(&self.target.config).await?;
        Ok(Dedicated {
            client,
            connection,
            permit,
        })
    }
}

/// Every tenant handle and server scheduler of this router.
pub struct Pools {
    pools: Mutex<HashMap<TenantId, Arc<TenantPool>>>,
    servers: Mutex<HashMap<ServerId, Arc<ServerPool>>>,
    wait: Duration,
    opens: OpenLimits,
    started: Instant,
}

impl Pools {
    pub fn new(wait: Duration, opens: OpenLimits) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
            wait,
            opens,
            started: Instant::now(),
        }
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The tenant's handle for this entry. A handle bound to another server, database or
    /// credential (the entry changed since) is replaced, and the tenant retired from its
    /// old server: no request ever runs on a database its tenant no longer uses.
    pub fn pool_for(&self, entry: &Arc<TenantEntry>) -> RouterResult<Arc<TenantPool>> {
        let mut pools = self.pools.lock();
        if let Some(pool) = pools.get(&entry.id) {
            if std::ptr::eq(pool.entry.as_ptr(), Arc::as_ptr(entry)) || matches(&pool.target, entry)
            {
                return Ok(pool.clone());
            }
            let old = pools.remove(&entry.id).expect("present");
            if entry.server.as_ref().map(|server| server.id) != Some(old.server.server.id) {
                old.server.retire(entry.id);
            }
        }
        let (Some(server), Some(database), Some(role), Some(password)) =
            (&entry.server, &entry.database, &entry.role, &entry.password)
        else {
            return Err(RouterError::TenantNotReady);
        };
        let scheduler = self.server_for(server);
        let mut config = tokio_postgres::Config::new();
        config
            .host(&server.host)
            .port(server.port)
            .user(role)
            .password(password.expose_secret())
            .dbname(database)
            .application_name("tenancy-router")
            .connect_timeout(Duration::from_secs(2));
        let pool = Arc::new(TenantPool {
            tenant: entry.id,
            server: scheduler,
            target: Arc::new(Target {
                server: server.clone(),
                database: database.clone(),
                role: role.clone(),
                password: password.clone(),
                config,
            }),
            entry: Arc::downgrade(entry),
            max: pool_size(entry.max_connections, server.connection_budget),
            last_used: AtomicU64::new(self.now_millis()),
        });
        pools.insert(entry.id, pool.clone());
        Ok(pool)
    }

    /// The server's scheduler; a budget the directory read anew (changed in the catalog)
    /// is applied to it.
    fn server_for(&self, server: &crate::tenant::ServerRef) -> Arc<ServerPool> {
        let scheduler = self
            .servers
            .lock()
            .entry(server.id)
            .or_insert_with(|| Arc::new(ServerPool::new(server, self.opens, self.wait)))
            .clone();
        scheduler.set_budget(server.connection_budget);
        scheduler
    }

    /// A server's connection budget changed in the catalog: applied at once (a smaller
    /// one closes idle connections now and busy ones as they come back).
    pub fn set_budget(&self, server: ServerId, budget: u32) {
        let scheduler = self.servers.lock().get(&server).cloned();
        if let Some(scheduler) = scheduler
            && scheduler.set_budget(budget)
        {
            tracing::info!(server = %server, budget, "server connection budget applied");
            // Handles carry a per-tenant cap sized by the old budget.
            self.pools
                .lock()
                .retain(|_, pool| pool.server.server.id != server);
        }
    }

    /// The tenant is no longer served as it was: its connections close (busy ones as
    /// they come back).
    pub fn remove(&self, tenant: TenantId) {
        let removed = self.pools.lock().remove(&tenant);
        if let Some(pool) = removed {
            pool.server.retire(tenant);
        }
    }

    /// Forgets every tenant (after notifications may have been missed).
    pub fn clear(&self) {
        self.pools.lock().clear();
        for server in self.servers() {
            server.retire_all();
        }
    }

    /// Closes connections idle for `idle` and forgets handles unused that long.
    pub fn collect_idle(&self, idle: Duration) {
        let now = self.now_millis();
        let idle_millis = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        self.pools.lock().retain(|_, pool| {
            now.saturating_sub(pool.last_used.load(Ordering::Relaxed)) < idle_millis
        });
        for server in self.servers() {
            server.collect_idle(idle);
        }
    }

    pub fn servers(&self) -> Vec<Arc<ServerPool>> {
        self.servers.lock().values().cloned().collect()
    }

    /// What the metrics show of the schedulers, read now.
    pub fn stats(&self) -> PoolStats {
        let open_pools = self.pools.lock().len();
        PoolStats {
            servers: self
                .servers()
                .iter()
                .map(|server| {
                    let (open_connections, waiting) = server.load();
                    let counts = &server.counts;
                    crate::metrics::ServerStats {
                        server: server.server.id,
                        open_connections,
                        budget: server.budget(),
                        opened: counts.opened.load(Ordering::Relaxed),
                        checkouts: counts.checkouts.load(Ordering::Relaxed),
                        reused: counts.reused.load(Ordering::Relaxed),
                        wait_micros: counts.wait_micros.load(Ordering::Relaxed),
                        evicted: counts.evicted.load(Ordering::Relaxed),
                        breaker_open: server.breaker.is_open(),
                        waiting,
                    }
                })
                .collect(),
            open_pools,
        }
    }
}

/// A tenant pool's size: the plan's `max_connections`, but at most half of its server's
/// budget (one tenant never holds the whole server), and at least one.
fn pool_size(max_connections: u32, connection_budget: u32) -> usize {
    let fair_share = (connection_budget / 2).max(1);
    usize::try_from(max_connections.clamp(1, fair_share)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::pool_size;

    #[test]
    fn a_pool_gets_the_plan_but_never_more_than_half_the_server() {
        assert_eq!(pool_size(10, 100), 10);
        assert_eq!(pool_size(80, 100), 50);
        assert_eq!(pool_size(0, 100), 1);
        assert_eq!(pool_size(10, 1), 1, "a budget of one still serves");
        assert_eq!(pool_size(10, 3), 1);
    }
}
