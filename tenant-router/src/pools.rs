//! One connection pool per tenant (deadpool-postgres), created on first use, sized by the
//! plan, closed when idle; and per database server a gate: a cap on the connections the
//! router holds open there, and a circuit breaker.
//!
//! Fairness: one tenant may hold at most half of a server's budget, and a request that finds
//! the budget spent first closes other tenants' idle connections on that server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{
    self, Metrics as ObjectMetrics, Pool, PoolError, RecycleError, RecycleResult, Timeouts,
};
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod};
use secrecy::ExposeSecret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::directory::{ServerRef, TenantEntry};
use crate::error::{RouterError, RouterResult};

/// Idle connections of other tenants closed when a request finds its server's budget spent.
const EVICT_AT_ONCE: usize = 2;

/// Consecutive connection failures that open a server's breaker.
const BREAKER_THRESHOLD: u32 = 3;

/// A server's circuit breaker: after repeated connection failures requests fail fast until
/// a health check (or a trial connection after the cool-down) succeeds.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .map(|state| state.open_until.is_some_and(|until| until > Instant::now()))
            .unwrap_or(false)
    }

    pub fn failure(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.failures += 1;
            if state.failures >= BREAKER_THRESHOLD {
                state.open_until = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    pub fn success(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.failures = 0;
            state.open_until = None;
        }
    }

    /// A health check saw the server answer: let requests try again (one more failure
    /// opens the breaker again).
    fn heal(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.failures = BREAKER_THRESHOLD - 1;
            state.open_until = None;
        }
    }
}

/// What the router holds per database server.
pub struct ServerGate {
    pub server: ServerRef,
    permits: Arc<Semaphore>,
    pub breaker: Breaker,
}

impl ServerGate {
    /// Connections the router holds open on this server now.
    pub fn open_connections(&self) -> u32 {
        let available = u32::try_from(self.permits.available_permits()).unwrap_or(0);
        self.server.connection_budget.saturating_sub(available)
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
    inner: deadpool_postgres::Manager,
    gate: Arc<ServerGate>,
    wait: Duration,
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
        match managed::Manager::create(&self.inner).await {
            Ok(client) => {
                self.gate.breaker.success();
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

/// A tenant's pool.
pub struct TenantPool {
    pub tenant: Uuid,
    pub plan: String,
    pub gate: Arc<ServerGate>,
    /// Where its connections go and as whom: a pool serves only entries that agree.
    target: PoolTarget,
    pool: Pool<GatedManager>,
    last_used: Mutex<Instant>,
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
        if let Ok(mut last_used) = self.last_used.lock() {
            *last_used = Instant::now();
        }
        if self.gate.breaker.is_open() {
            return Err(RouterError::ServerUnavailable);
        }
        if self.gate.permits.available_permits() == 0 && self.pool.status().available == 0 {
            pools.evict_idle(self.gate.server.id, self.tenant);
        }
        self.pool.get().await.map_err(|error| match error {
            PoolError::Timeout(_) => RouterError::PoolTimeout,
            PoolError::Backend(ConnectError::Budget) => RouterError::PoolTimeout,
            PoolError::Backend(ConnectError::BreakerOpen) => RouterError::ServerUnavailable,
            PoolError::Backend(ConnectError::Postgres(error)) => RouterError::from(error),
            PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                RouterError::ServerUnavailable
            }
        })
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .map(|at| at.elapsed())
            .unwrap_or_default()
    }
}

/// Every tenant pool and server gate of this router.
pub struct Pools {
    pools: Mutex<HashMap<Uuid, Arc<TenantPool>>>,
    gates: Mutex<HashMap<Uuid, Arc<ServerGate>>>,
    wait: Duration,
}

impl Pools {
    pub fn new(wait: Duration) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            wait,
        }
    }

    /// The tenant's pool for this entry, created on first use. A pool bound to another
    /// server, database or credential (the entry changed since) is closed and replaced:
    /// no request ever runs on a database its tenant no longer uses.
    pub fn pool_for(&self, entry: &TenantEntry) -> RouterResult<Arc<TenantPool>> {
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| RouterError::Internal(anyhow::anyhow!("pool map poisoned")))?;
        if let Some(pool) = pools.get(&entry.id.0) {
            if pool.target.matches(entry) {
                return Ok(pool.clone());
            }
            pool.pool.close();
            pools.remove(&entry.id.0);
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
                config,
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            ),
            gate: gate.clone(),
            wait: self.wait,
        };
        // One tenant may hold at most half of its server's budget.
        let fair_share = (server.connection_budget / 2).max(1);
        let size = usize::try_from(entry.max_connections.clamp(1, fair_share)).unwrap_or(1);
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
            tenant: entry.id.0,
            plan: entry.plan.clone(),
            gate,
            target: PoolTarget {
                server: server.clone(),
                database: database.clone(),
                role: role.clone(),
                password: password.clone(),
            },
            pool,
            last_used: Mutex::new(Instant::now()),
        });
        pools.insert(entry.id.0, tenant_pool.clone());
        Ok(tenant_pool)
    }

    fn gate_for(&self, server: &ServerRef) -> Arc<ServerGate> {
        let Ok(mut gates) = self.gates.lock() else {
            return Arc::new(ServerGate {
                server: server.clone(),
                permits: Arc::new(Semaphore::new(0)),
                breaker: Breaker::default(),
            });
        };
        gates
            .entry(server.id)
            .or_insert_with(|| {
                Arc::new(ServerGate {
                    server: server.clone(),
                    permits: Arc::new(Semaphore::new(
                        usize::try_from(server.connection_budget).unwrap_or(1),
                    )),
                    breaker: Breaker::default(),
                })
            })
            .clone()
    }

    /// Closes a tenant's pool (its connections close as they come back).
    pub fn remove(&self, tenant: Uuid) {
        let removed = self
            .pools
            .lock()
            .ok()
            .and_then(|mut pools| pools.remove(&tenant));
        if let Some(pool) = removed {
            pool.pool.close();
        }
    }

    /// Closes every tenant pool (after notifications may have been missed).
    pub fn clear(&self) {
        let removed: Vec<Arc<TenantPool>> = self
            .pools
            .lock()
            .map(|mut pools| pools.drain().map(|(_, pool)| pool).collect())
            .unwrap_or_default();
        for pool in removed {
            pool.pool.close();
        }
    }

    /// Closes a few idle connections of other tenants on a server, least recently used
    /// pools first, to free budget without emptying everyone's pool.
    fn evict_idle(&self, server: Uuid, except: Uuid) {
        let mut victims: Vec<Arc<TenantPool>> = self
            .pools
            .lock()
            .map(|pools| {
                pools
                    .values()
                    .filter(|pool| pool.gate.server.id == server && pool.tenant != except)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        victims.sort_by_key(|pool| std::cmp::Reverse(pool.idle_for()));
        let mut to_free = EVICT_AT_ONCE;
        for pool in victims {
            if to_free == 0 {
                break;
            }
            let _closed = pool.pool.retain(|_, _| {
                if to_free > 0 {
                    to_free -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Closes pools unused for `idle`, and connections idle that long in the others.
    pub fn collect_idle(&self, idle: Duration) {
        let Ok(mut pools) = self.pools.lock() else {
            return;
        };
        pools.retain(|_, pool| {
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
        self.gates
            .lock()
            .map(|gates| gates.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Requests waiting for a connection, per server.
    pub fn waiting_by_server(&self) -> HashMap<Uuid, usize> {
        let mut waiting = HashMap::new();
        if let Ok(pools) = self.pools.lock() {
            for pool in pools.values() {
                *waiting.entry(pool.gate.server.id).or_insert(0) += pool.pool.status().waiting;
            }
        }
        waiting
    }

    pub fn open_pools(&self) -> usize {
        self.pools.lock().map(|pools| pools.len()).unwrap_or(0)
    }
}

/// Health checks for servers whose breaker is open (a TCP connect), and the idle collector.
pub fn spawn_maintenance(pools: Arc<Pools>, idle: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        let mut rounds: u32 = 0;
        loop {
            ticker.tick().await;
            rounds = rounds.wrapping_add(1);
            for gate in pools.gates() {
                if gate.breaker.is_open() {
                    let address = (gate.server.host.as_str(), gate.server.port);
                    let probe = tokio::time::timeout(
                        Duration::from_millis(300),
                        tokio::net::TcpStream::connect(address),
                    )
                    .await;
                    if matches!(probe, Ok(Ok(_))) {
                        tracing::info!(server = %gate.server.id, "server answers again; closing its breaker");
                        gate.breaker.heal();
                    }
                }
            }
            if rounds.is_multiple_of(20) {
                pools.collect_idle(idle);
            }
        }
    })
}
