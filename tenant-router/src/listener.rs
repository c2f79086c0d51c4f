//! The catalog's change notifications (`LISTEN tenancy_directory`): each drops the
//! affected directory entries and pools within milliseconds; a lost connection drops them
//! all (notifications may have been missed meanwhile).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tenancy_core::{ServerId, TenantId};
use tokio::task::JoinHandle;

use crate::directory::Directory;
use crate::pools::Pools;

/// Listens for catalog changes and drops the affected entries and pools within
/// milliseconds. While the listener is down (catalog restart), every entry and pool is
/// dropped when it comes back, since notifications may have been missed.
pub fn spawn_listener(
    catalog: PgPool,
    directory: Arc<Directory>,
    pools: Arc<Pools>,
    prewarm: usize,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listen(&catalog, &directory, &pools, prewarm).await {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(%error, "directory listener lost the catalog; reconnecting")
                }
            }
            directory.clear();
            pools.clear();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

async fn listen(
    catalog: &PgPool,
    directory: &Arc<Directory>,
    pools: &Arc<Pools>,
    prewarm: usize,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(catalog).await?;
    listener.listen(catalog::directory::CHANNEL).await?;
    // Anything cached before the listener was up may be stale.
    directory.clear();
    pools.clear();
    // Now that changes are heard, the busiest tenants get a connection before they ask.
    crate::prewarm::spawn(catalog.clone(), directory.clone(), pools.clone(), prewarm);
    loop {
        let Some(notification) = listener.try_recv().await? else {
            // The connection dropped (and is re-established on the next call): whatever
            // was announced meanwhile is lost, so forget everything.
            directory.clear();
            pools.clear();
            continue;
        };
        let payload = notification.payload();
        if let Some(id) = payload
            .strip_prefix("tenant:")
            .and_then(|id| id.parse::<TenantId>().ok())
        {
            directory.invalidate(id);
            pools.remove(id);
        } else if let Some(plan) = payload.strip_prefix("plan:") {
            for id in directory.invalidate_plan(plan) {
                pools.remove(id);
            }
        } else if let Some(server) = payload
            .strip_prefix("server:")
            .and_then(|id| id.parse::<ServerId>().ok())
        {
            directory.clear();
            // A new budget applies at once, not only when its tenants are next read.
            match catalog::servers::connection_budget(catalog, server).await {
                Ok(Some(budget)) => {
                    pools.set_budget(server, u32::try_from(budget).unwrap_or(1));
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "read a server's connection budget"),
            }
        }
    }
}
