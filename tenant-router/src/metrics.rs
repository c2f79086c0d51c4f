//! Prometheus metrics of the router. No label carries a tenant: 10,000 tenants must not
//! mean 10,000 series. Servers are few and labelled by id.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tenancy_http::metrics::HttpMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: Arc<HttpMetrics>,
    lookups: Family<LookupLabels, Counter>,
    catalog_reads: Counter,
    directory_entries: Gauge,
    token_cache: Family<LookupLabels, Counter>,
    server_connections: Family<ServerLabels, Gauge>,
    server_budget: Family<ServerLabels, Gauge>,
    opened: Family<ServerLabels, Counter>,
    checkouts: Family<ServerLabels, Counter>,
    reused: Family<ServerLabels, Counter>,
    wait_seconds: Family<ServerLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    evicted: Family<ServerLabels, Counter>,
    breaker_open: Family<ServerLabels, Gauge>,
    waiting: Family<ServerLabels, Gauge>,
    open_pools: Gauge,
    event_clients: Gauge,
    event_listeners: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenancy_router");
        let http = Arc::new(HttpMetrics::register(&mut registry));
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "directory_lookups",
            "Tenant directory lookups by result",
            lookups.clone(),
        );
        let catalog_reads = Counter::default();
        registry.register(
            "directory_catalog_reads",
            "Tenant directory entries read from the catalog (one per cold tenant however many requests wait for it)",
            catalog_reads.clone(),
        );
        let directory_entries = Gauge::default();
        registry.register(
            "directory_entries",
            "Tenants the directory holds",
            directory_entries.clone(),
        );
        let token_cache = Family::<LookupLabels, Counter>::default();
        registry.register(
            "token_cache_lookups",
            "Bearer tokens looked up in the verified-token cache, by result",
            token_cache.clone(),
        );
        let server_connections = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_connections",
            "Connections the router holds open per database server",
            server_connections.clone(),
        );
        let server_budget = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_connection_budget",
            "The connection budget in force per database server",
            server_budget.clone(),
        );
        let opened = Family::<ServerLabels, Counter>::default();
        registry.register(
            "server_connections_opened",
            "Connections opened per database server",
            opened.clone(),
        );
        let checkouts = Family::<ServerLabels, Counter>::default();
        registry.register(
            "server_checkouts",
            "Requests that got a connection per database server",
            checkouts.clone(),
        );
        let reused = Family::<ServerLabels, Counter>::default();
        registry.register(
            "server_checkouts_warm",
            "Requests served by a warm connection per database server (warm / checkouts is the reuse ratio)",
            reused.clone(),
        );
        let wait_seconds =
            Family::<ServerLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "server_connection_wait_seconds",
            "Time requests waited for a connection per database server",
            wait_seconds.clone(),
        );
        let evicted = Family::<ServerLabels, Counter>::default();
        registry.register(
            "server_evictions",
            "Idle connections closed to make room for another tenant per database server",
            evicted.clone(),
        );
        let breaker_open = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_breaker_open",
            "1 while a server's circuit breaker is open",
            breaker_open.clone(),
        );
        let waiting = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_waiting_requests",
            "Requests waiting for a connection per server",
            waiting.clone(),
        );
        let open_pools = Gauge::default();
        registry.register("tenant_pools", "Tenant pools open", open_pools.clone());
        let event_clients = Gauge::default();
        registry.register(
            "event_clients",
            "Clients connected to GET /v1/events",
            event_clients.clone(),
        );
        let event_listeners = Gauge::default();
        registry.register(
            "event_listeners",
            "Tenants whose database this router listens to for events",
            event_listeners.clone(),
        );
        Self {
            registry,
            http,
            lookups,
            catalog_reads,
            directory_entries,
            token_cache,
            server_connections,
            server_budget,
            opened,
            checkouts,
            reused,
            wait_seconds,
            evicted,
            breaker_open,
            waiting,
            open_pools,
            event_clients,
            event_listeners,
        }
    }
}

impl Metrics {
    pub fn directory_catalog_read(&self) {
        self.catalog_reads.inc();
    }

    pub fn token_cache(&self, result: &str) {
        self.token_cache
            .get_or_create(&LookupLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn directory_lookup(&self, result: &str) {
        self.lookups
            .get_or_create(&LookupLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format, with the pool gauges from `pools` and
    /// the events figures.
    pub fn render(
        &self,
        pools: &PoolStats,
        events: EventStats,
        directory_entries: usize,
    ) -> String {
        self.directory_entries
            .set(i64::try_from(directory_entries).unwrap_or(i64::MAX));
        self.event_clients
            .set(i64::try_from(events.clients).unwrap_or(i64::MAX));
        self.event_listeners
            .set(i64::try_from(events.listeners).unwrap_or(i64::MAX));
        for server in &pools.servers {
            let labels = ServerLabels {
                server: server.server.to_string(),
            };
            self.server_connections
                .get_or_create(&labels)
                .set(i64::from(server.open_connections));
            self.server_budget
                .get_or_create(&labels)
                .set(i64::from(server.budget));
            // The scheduler counts since start; each counter catches up to it (monotonic).
            for (family, total) in [
                (&self.opened, server.opened),
                (&self.checkouts, server.checkouts),
                (&self.reused, server.reused),
                (&self.evicted, server.evicted),
            ] {
                let counter = family.get_or_create(&labels);
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            let wait = self.wait_seconds.get_or_create(&labels);
            let total = server.wait_micros as f64 / 1e6;
            if total > wait.get() {
                wait.inc_by(total - wait.get());
            }
            self.breaker_open
                .get_or_create(&labels)
                .set(i64::from(server.breaker_open));
            self.waiting
                .get_or_create(&labels)
                .set(i64::try_from(server.waiting).unwrap_or(i64::MAX));
        }
        self.open_pools
            .set(i64::try_from(pools.open_pools).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encode metrics");
        }
        text
    }
}

/// Connected events clients and the tenants listened to, at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventStats {
    pub clients: usize,
    pub listeners: usize,
}

/// The pools' state at one moment, for [`Metrics::render`] (metrics never reach into the
/// pools themselves).
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    pub servers: Vec<ServerStats>,
    pub open_pools: usize,
}

#[derive(Debug, Clone)]
pub struct ServerStats {
    pub server: tenancy_core::ServerId,
    pub open_connections: u32,
    /// The connection budget in force.
    pub budget: u32,
    /// Since the router started: connections opened, requests that got a connection, the
    /// time they waited for it (µs), idle connections closed to make room.
    pub opened: u64,
    pub checkouts: u64,
    /// Of them, served by a warm connection.
    pub reused: u64,
    pub wait_micros: u64,
    pub evicted: u64,
    pub breaker_open: bool,
    /// Requests waiting for a connection to this server.
    pub waiting: usize,
}
