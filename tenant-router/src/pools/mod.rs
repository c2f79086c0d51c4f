//! One connection pool per tenant (deadpool-postgres), created on first use, sized by the
//! plan, closed when idle; and per database server a gate: a cap on the connections the
//! router holds open there, and a circuit breaker.
//!
//! Fairness: one tenant may hold at most half of a server's budget, and a request that finds
//! the budget spent first closes other tenants' idle connections on that server.

mod breaker;
mod gate;
mod maintenance;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool::managed::{self, Pool, PoolError, Timeouts};
use deadpool_postgres::{ManagerConfig, RecyclingMethod};
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use tenancy_core::{ServerId, TenantId};
use tokio_postgres::NoTls;

pub use breaker::Breaker;
pub use gate::{ConnectError, GatedClient, GatedManager, ServerGate};
pub use maintenance::spawn_maintenance;

use crate::error::{RouterError, RouterResult};
use crate::metrics::PoolStats;
use crate::tenant::{ServerRef, TenantEntry};

/// Idle connections of other tenants closed when a request finds its server's budget spent.
const EVICT_AT_ONCE: usize = 2;

/// A tenant's pool.
pub struct TenantPool {
    pub tenant: TenantId,
    pub plan: String,
    pub gate: Arc<ServerGate>,
    /// Where its connections go and as whom: a pool serves only entries that agree.
    target: PoolTarget,
    pool: Pool<GatedManager>,
    /// How to open a connection of the tenant's own (the events listener's).
    connect: tokio_postgres::Config,
    last_used: Mutex<Instant>,
}

/// A connection outside the pool (for `LISTEN`), and the server permit it holds while open.
pub struct Dedicated {
    pub client: tokio_postgres::Client,
    pub connection:
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    pub permit: tokio::sync::OwnedSemaphorePermit,
}

/// What a pool's connections are bound to: a server, a database, a role and its password.
/// After a restore switch, a move or a new password, an entry no longer matches its old
/// pool, and that pool is never used for it again.
struct PoolTarget {
    server: ServerRef,
    database: String,
    role: String,
    password: secrecy::SecretString,
}

impl PoolTarget {
    fn matches(&self, entry: &TenantEntry) -> bool {
        entry.server.as_ref() == Some(&self.server)
            && entry.database.as_deref() == Some(self.database.as_str())
            && entry.role.as_deref() == Some(self.role.as_str())
            && entry.password.as_ref().map(ExposeSecret::expose_secret)
                == Some(self.password.expose_secret())
    }
}

pub type Connection = managed::Object<GatedManager>;

impl TenantPool {
    /// A connection, waiting at most the configured time.
    pub async fn connection(&self, pools: &Pools) -> RouterResult<Connection> {
        *self.last_used.lock() = Instant::now();
        if self.gate.breaker.is_open() {
            return Err(RouterError::ServerUnavailable);
        }
        if self.gate.permits.available_permits() == 0 && self.pool.status().available == 0 {
            pools.evict_idle(self.gate.server.id, self.tenant);
        }
        let started = Instant::now();
        let connection = self.pool.get().await;
        if connection.is_ok() {
            let counts = &self.gate.counts;
            counts.checkouts.fetch_add(1, Ordering::Relaxed);
            let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            counts.wait_micros.fetch_add(waited, Ordering::Relaxed);
        }
        connection.map_err(|error| match error {
            PoolError::Timeout(_) => RouterError::PoolTimeout,
            PoolError::Backend(ConnectError::Budget) => RouterError::PoolTimeout,
            PoolError::Backend(ConnectError::BreakerOpen) => RouterError::ServerUnavailable,
            PoolError::Backend(ConnectError::Postgres(error)) => RouterError::from(error),
            PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                RouterError::ServerUnavailable
            }
        })
    }

    /// A connection of the tenant's own, outside the pool but within the server's budget
    /// (it holds a permit while open) and the breaker.
    pub async fn dedicated(&self) -> RouterResult<Dedicated> {
        if self.gate.breaker.is_open() {
            return Err(RouterError::ServerUnavailable);
        }
        let permit =
            tokio::time::timeout(self.gate_wait(), self.gate.permits.clone().acquire_owned())
                .await
                .map_err(|_| RouterError::PoolTimeout)?
                .map_err(|_| RouterError::PoolTimeout)?;
        if !self.gate.may_open(self.gate_wait()).await {
            return Err(RouterError::PoolTimeout);
        }
        match self.connect.connect(NoTls).await {
            Ok((client, connection)) => {
                self.gate.breaker.success();
                Ok(Dedicated {
                    client,
                    connection,
                    permit,
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

    fn gate_wait(&self) -> Duration {
        self.pool.timeouts().wait.unwrap_or(Duration::from_secs(2))
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().elapsed()
    }
}

/// Every tenant pool and server gate of this router.
pub struct Pools {
    pools: Mutex<HashMap<TenantId, Arc<TenantPool>>>,
    gates: Mutex<HashMap<ServerId, Arc<ServerGate>>>,
    wait: Duration,
    /// Connections opened per second per server at most.
    opens_per_second: u32,
}

impl Pools {
    pub fn new(wait: Duration, opens_per_second: u32) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            wait,
            opens_per_second,
        }
    }

    /// The tenant's pool for this entry, created on first use. A pool bound to another
    /// server, database or credential (the entry changed since) is closed and replaced:
    /// no request ever runs on a database its tenant no longer uses.
    pub fn pool_for(&self, entry: &TenantEntry) -> RouterResult<Arc<TenantPool>> {
        let mut pools = self.pools.lock();
        if let Some(pool) = pools.get(&entry.id) {
            if pool.target.matches(entry) {
                return Ok(pool.clone());
            }
            pool.pool.close();
            pools.remove(&entry.id);
        }
        let (Some(server), Some(database), Some(role), Some(password)) =
            (&entry.server, &entry.database, &entry.role, &entry.password)
        else {
            return Err(RouterError::TenantNotReady);
        };
        let gate = self.gate_for(server);
        let mut config = tokio_postgres::Config::new();
        config
            .host(&server.host)
            .port(server.port)
            .user(role)
            .password(password.expose_secret())
            .dbname(database)
            .application_name("tenancy-router")
            .connect_timeout(Duration::from_secs(2));
        let manager = GatedManager {
            inner: deadpool_postgres::Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            ),
            gate: gate.clone(),
            wait: self.wait,
        };
        let size = pool_size(entry.max_connections, server.connection_budget);
        let pool = Pool::builder(manager)
            .max_size(size)
            .timeouts(Timeouts {
                wait: Some(self.wait),
                create: Some(self.wait + Duration::from_secs(2)),
                recycle: Some(Duration::from_secs(1)),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| {
                RouterError::Internal(anyhow::Error::new(error).context("build a tenant pool"))
            })?;
        let tenant_pool = Arc::new(TenantPool {
            tenant: entry.id,
            plan: entry.plan.clone(),
            gate,
            target: PoolTarget {
                server: server.clone(),
                database: database.clone(),
                role: role.clone(),
                password: password.clone(),
            },
            pool,
            connect: config,
            last_used: Mutex::new(Instant::now()),
        });
        pools.insert(entry.id, tenant_pool.clone());
        Ok(tenant_pool)
    }

    /// The server's gate; a budget the directory read anew (changed in the catalog) is
    /// applied to it.
    fn gate_for(&self, server: &ServerRef) -> Arc<ServerGate> {
        let gate = self
            .gates
            .lock()
            .entry(server.id)
            .or_insert_with(|| Arc::new(ServerGate::new(server, self.opens_per_second)))
            .clone();
        gate.set_budget(server.connection_budget);
        gate
    }

    /// A server's connection budget changed in the catalog: applied at once, and every pool
    /// on the server is closed (idle connections close now, busy ones as they come back;
    /// the next request gets a pool sized for the new budget).
    pub fn set_budget(&self, server: ServerId, budget: u32) {
        let gate = self.gates.lock().get(&server).cloned();
        let Some(gate) = gate else {
            return;
        };
        if !gate.set_budget(budget) {
            return;
        }
        tracing::info!(server = %server, budget, "server connection budget applied");
        let closed: Vec<Arc<TenantPool>> = {
            let mut pools = self.pools.lock();
            let ids: Vec<TenantId> = pools
                .iter()
                .filter(|(_, pool)| pool.gate.server.id == server)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| pools.remove(id)).collect()
        };
        for pool in closed {
            pool.pool.close();
        }
    }

    /// Closes a tenant's pool (its connections close as they come back).
    pub fn remove(&self, tenant: TenantId) {
        let removed = self.pools.lock().remove(&tenant);
        if let Some(pool) = removed {
            pool.pool.close();
        }
    }

    /// Closes every tenant pool (after notifications may have been missed).
    pub fn clear(&self) {
        let removed: Vec<Arc<TenantPool>> =
            self.pools.lock().drain().map(|(_, pool)| pool).collect();
        for pool in removed {
            pool.pool.close();
        }
    }

    /// Closes a few idle connections of other tenants on a server, least recently used
    /// pools first, to free budget without emptying everyone's pool.
    fn evict_idle(&self, server: ServerId, except: TenantId) {
        let mut victims: Vec<Arc<TenantPool>> = self
            .pools
            .lock()
            .values()
            .filter(|pool| pool.gate.server.id == server && pool.tenant != except)
            .cloned()
            .collect();
        // Each pool's idle time read once: read during the sort it changes (time passes,
        // requests use pools), and a sort whose keys change is not a total order (the
        // standard library's sort panics on that).
        victims.sort_by_cached_key(|pool| std::cmp::Reverse(pool.idle_for()));
        let mut to_free = EVICT_AT_ONCE;
        for pool in victims {
            if to_free == 0 {
                break;
            }
            let closed = pool.pool.retain(|_, _| {
                if to_free > 0 {
                    to_free -= 1;
                    false
                } else {
                    true
                }
            });
            pool.gate.counts.evicted.fetch_add(
                u64::try_from(closed.removed.len()).unwrap_or(0),
                Ordering::Relaxed,
            );
        }
    }

    /// Closes pools unused for `idle`, and connections idle that long in the others.
    pub fn collect_idle(&self, idle: Duration) {
        self.pools.lock().retain(|_, pool| {
            if pool.idle_for() >= idle {
                pool.pool.close();
                false
            } else {
                pool.pool.retain(|_, metrics| metrics.last_used() < idle);
                true
            }
        });
    }

    pub fn gates(&self) -> Vec<Arc<ServerGate>> {
        self.gates.lock().values().cloned().collect()
    }

    /// What the metrics show of the pools and gates, read now.
    pub fn stats(&self) -> PoolStats {
        let mut waiting: HashMap<ServerId, usize> = HashMap::new();
        let pools = self.pools.lock();
        for pool in pools.values() {
            *waiting.entry(pool.gate.server.id).or_insert(0) += pool.pool.status().waiting;
        }
        let open_pools = pools.len();
        drop(pools);
        PoolStats {
            servers: self
                .gates()
                .iter()
                .map(|gate| crate::metrics::ServerStats {
                    server: gate.server.id,
                    open_connections: gate.open_connections(),
                    budget: gate.budget(),
                    opened: gate.counts.opened.load(Ordering::Relaxed),
                    checkouts: gate.counts.checkouts.load(Ordering::Relaxed),
                    wait_micros: gate.counts.wait_micros.load(Ordering::Relaxed),
                    evicted: gate.counts.evicted.load(Ordering::Relaxed),
                    breaker_open: gate.breaker.is_open(),
                    waiting: waiting.get(&gate.server.id).copied().unwrap_or(0),
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
