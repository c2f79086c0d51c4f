//! Prometheus metrics of the control plane: the request metrics of `tenancy_http`, under
//! the `tenancy_control_plane` prefix.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tenancy_http::metrics::HttpMetrics;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: Arc<HttpMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenancy_control_plane");
        let http = Arc::new(HttpMetrics::register(&mut registry));
        Self { registry, http }
    }
}

impl Metrics {
    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encode metrics");
        }
        text
    }
}
