//! Every 500 ms: a TCP health check of each server whose breaker is open (an answer heals
//! it); every 10 s: pools unused for the idle time are closed.

use std::sync::Arc;
use std::time::Duration;

use super::Pools;

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
