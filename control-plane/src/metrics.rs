//! Prometheus metrics of the control plane: the request metrics of `tenancy_http`, under
//! the `tenancy_control_plane` prefix.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tenancy_http::metrics::HttpMetrics;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: Arc<HttpMetrics>,
    /// Objects of this installation the catalog does not know, by state, as of the last
    /// sweep.
    orphans: Family<OrphanLabels, Gauge>,
    /// Login password checks: `verified` (argon2 run) or `refused` (the gate was full).
    password_checks: Family<OutcomeLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrphanLabels {
    state: &'static str,
}

const ORPHAN_STATES: [(&str, crate::sweep::OrphanState); 5] = [
    ("young", crate::sweep::OrphanState::Young),
    ("in_use", crate::sweep::OrphanState::InUse),
    ("reported", crate::sweep::OrphanState::Reported),
    ("quarantined", crate::sweep::OrphanState::Quarantined),
    ("dropped", crate::sweep::OrphanState::Dropped),
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenancy_control_plane");
        let http = Arc::new(HttpMetrics::register(&mut registry));
        let orphans = Family::<OrphanLabels, Gauge>::default();
        registry.register(
            "sweep_orphans",
            "Databases and roles of this installation that the catalog does not know, by state, at the last sweep",
            orphans.clone(),
        );
        let password_checks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "password_checks",
            "Login password checks: verified (argon2 run) or refused (too many at once)",
            password_checks.clone(),
        );
        Self {
            registry,
            http,
            orphans,
            password_checks,
        }
    }
}

impl Metrics {
    pub fn password_check(&self, outcome: &'static str) {
        self.password_checks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The orphans the last sweep found.
    pub fn record_orphans(&self, orphans: &[crate::sweep::Orphan]) {
        for (label, state) in ORPHAN_STATES {
            let count = orphans
                .iter()
                .filter(|orphan| orphan.state == state)
                .count();
            self.orphans
                .get_or_create(&OrphanLabels { state: label })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "encode metrics");
        }
        text
    }
}
