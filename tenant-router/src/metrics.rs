//! Prometheus metrics of the router. No label carries a tenant: 10,000 tenants must not
//! mean 10,000 series. Servers are few and labelled by id.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    lookups: Family<LookupLabels, Counter>,
    server_connections: Family<ServerLabels, Gauge>,
    breaker_open: Family<ServerLabels, Gauge>,
    waiting: Family<ServerLabels, Gauge>,
    open_pools: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenancy_router");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests handled", requests.clone());
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            latency.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "directory_lookups",
            "Tenant directory lookups by result",
            lookups.clone(),
        );
        let server_connections = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_connections",
            "Connections the router holds open per database server",
            server_connections.clone(),
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
        Self {
            registry,
            requests,
            latency,
            lookups,
            server_connections,
            breaker_open,
            waiting,
            open_pools,
        }
    }
}

impl Metrics {
    pub fn directory_lookup(&self, result: &str) {
        self.lookups
            .get_or_create(&LookupLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format, with the pool gauges read now.
    pub fn render(&self, pools: &crate::pools::Pools) -> String {
        for gate in pools.gates() {
            let labels = ServerLabels {
                server: gate.server.id.to_string(),
            };
            self.server_connections
                .get_or_create(&labels)
                .set(i64::from(gate.open_connections()));
            self.breaker_open
                .get_or_create(&labels)
                .set(i64::from(gate.breaker.is_open()));
        }
        for (server, waiting) in pools.waiting_by_server() {
            let labels = ServerLabels {
                server: server.to_string(),
            };
            self.waiting
                .get_or_create(&labels)
                .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        }
        self.open_pools
            .set(i64::try_from(pools.open_pools()).unwrap_or(i64::MAX));
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encode metrics");
        }
        text
    }
}

/// Middleware that counts and times every routed request.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let metrics: &Arc<Metrics> = &state.metrics;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}
