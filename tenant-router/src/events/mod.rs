//! Live events for connected clients (`GET /v1/events`): role, permission, user and
//! session changes of their tenant, within a second of the commit.
//!
//! The tenant's database announces every change itself (triggers → `NOTIFY
//! tenancy_events`, on commit, whatever code path made it). While a tenant has connected
//! clients, this router keeps one `LISTEN` connection to its database, within the server's
//! connection budget, and hands each notification to the tenant's [`Hub`]; when the last
//! client leaves, the listener closes.

mod hub;
mod listener;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tenancy_core::TenantId;

pub use hub::{ClientGuard, Event, Hub, Subscription, UNAVAILABLE};

use crate::error::{RouterError, RouterResult};
use crate::state::AppState;

/// The channel tenant databases announce changes on.
pub const CHANNEL: &str = "tenancy_events";

/// Every tenant hub of this router, and the bound on connected clients.
pub struct Events {
    hubs: Mutex<HashMap<TenantId, Arc<Hub>>>,
    clients: Arc<AtomicUsize>,
    pub max_clients: usize,
    pub replay: usize,
    pub heartbeat: Duration,
    pub ticket_ttl: Duration,
}

/// A connected client: counted by its hub and by the router until dropped.
pub struct Connected {
    pub hub: Arc<Hub>,
    _hub_guard: ClientGuard,
    _guard: CountGuard,
}

struct CountGuard(Arc<AtomicUsize>);

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Events {
    pub fn new(args: &crate::config::EventsArgs) -> Self {
        Self {
            hubs: Mutex::new(HashMap::new()),
            clients: Arc::new(AtomicUsize::new(0)),
            max_clients: args.events_max_clients,
            replay: usize::try_from(args.events_replay).unwrap_or(256),
            heartbeat: args.events_heartbeat,
            ticket_ttl: args.events_ticket_ttl,
        }
    }

    /// Connects a client of `tenant`: its hub (and listener) are started on the first.
    /// Beyond the router's bound on clients, `503 busy`.
    pub fn connect(&self, state: &AppState, tenant: TenantId) -> RouterResult<Connected> {
        if self.clients.fetch_add(1, Ordering::SeqCst) >= self.max_clients {
            self.clients.fetch_sub(1, Ordering::SeqCst);
            return Err(RouterError::Busy);
        }
        let guard = CountGuard(self.clients.clone());
        let mut hubs = self.hubs.lock();
        let hub = match hubs.get(&tenant) {
            Some(hub) => hub.clone(),
            None => {
                let hub = Arc::new(Hub::new(self.replay));
                hubs.insert(tenant, hub.clone());
                tokio::spawn(listener::run(state.clone(), tenant, hub.clone()));
                hub
            }
        };
        // Joined under the map's lock: a listener that sees no clients and removes its hub
        // does so under the same lock, so a hub is never left without its listener.
        let hub_guard = hub.join();
        Ok(Connected {
            hub,
            _hub_guard: hub_guard,
            _guard: guard,
        })
    }

    /// Removes the hub when it has no clients left; whether it did.
    fn retire(&self, tenant: TenantId, hub: &Arc<Hub>) -> bool {
        let mut hubs = self.hubs.lock();
        if hub.clients() > 0 {
            return false;
        }
        if hubs
            .get(&tenant)
            .is_some_and(|current| Arc::ptr_eq(current, hub))
        {
            hubs.remove(&tenant);
        }
        true
    }

    /// Removes the hub whatever its clients (their streams are ending).
    fn remove(&self, tenant: TenantId, hub: &Arc<Hub>) {
        let mut hubs = self.hubs.lock();
        if hubs
            .get(&tenant)
            .is_some_and(|current| Arc::ptr_eq(current, hub))
        {
            hubs.remove(&tenant);
        }
    }

    /// Clients connected now, over all tenants.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// Tenants with a hub (and a listener) now.
    pub fn tenants(&self) -> usize {
        self.hubs.lock().len()
    }
}
