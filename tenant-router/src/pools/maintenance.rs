//! Every 100 ms: waiters that have waited long enough are given idle connections' places.
//! Every 500 ms: a TCP health check of each server whose breaker is open (an answer heals
//! it, and its busiest tenants are warmed again). Every 10 s: connections idle for the idle
//! time are closed.

use std::sync::Arc;
use std::time::Duration;

use super::{Pools, ServerPool};

/// Tenants warmed again on a server that came back (at most).
const REWARM: usize = 32;

/// Health checks for servers whose breaker is open (a TCP connect), aged waiters, and the
/// idle collector.
pub fn spawn_maintenance(pools: Arc<Pools>, idle: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds: u32 = 0;
        loop {
            ticker.tick().await;
            rounds = rounds.wrapping_add(1);
            for server in pools.servers() {
                server.serve_aged();
            }
            if !rounds.is_multiple_of(5) {
                continue;
            }
            for server in pools.servers() {
                if server.breaker.is_open() {
                    let address = (server.server.host.as_str(), server.server.port);
                    let probe = tokio::time::timeout(
                        Duration::from_millis(300),
                        tokio::net::TcpStream::connect(address),
                    )
                    .await;
                    if matches!(probe, Ok(Ok(_))) {
                        tracing::info!(server = %server.server.id, "server answers again; closing its breaker");
                        server.breaker.heal();
                        tokio::spawn(rewarm(server.clone()));
                    }
                }
            }
            if rounds.is_multiple_of(100) {
                pools.collect_idle(idle);
            }
        }
    })
}

/// After a server came back: a connection each for its busiest tenants, opened and left
/// warm (within the budget and the rate of opens, like any other).
async fn rewarm(server: Arc<ServerPool>) {
    let busiest = server.busiest_cold(REWARM);
    let mut warmed = 0;
    for (tenant, target) in busiest {
        if server.checkout(tenant, &target, 1).await.is_ok() {
            warmed += 1;
        }
    }
    tracing::info!(server = %server.server.id, warmed, "warmed the busiest tenants again");
}
