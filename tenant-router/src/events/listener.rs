//! One tenant's `LISTEN` connection: notifications to the hub until the last client
//! leaves. A lost connection is opened again (the tenant may have moved or been restored:
//! the directory says where it is now), and clients get a `resync` for what the gap may
//! have hidden.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tenancy_core::TenantId;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::{CHANNEL, Hub};
use crate::extract::admit_quietly;
use crate::state::AppState;

/// Notifications waiting for the hub at most; beyond, the hub is told to resync.
const BACKLOG: usize = 1024;

pub async fn run(state: AppState, tenant: TenantId, hub: Arc<Hub>) {
    let mut connected_before = false;
    let mut retry = Duration::from_millis(100);
    loop {
        if state.events.retire(tenant, &hub) {
            return;
        }
        match listen(&state, tenant, &hub, connected_before).await {
            Ok(Ended::Unavailable) => {
                state.events.remove(tenant, &hub);
                return;
            }
            Ok(Ended::Lost | Ended::NoClients) => {
                connected_before = true;
                retry = Duration::from_millis(100);
            }
            Err(error) => {
                tracing::debug!(%tenant, error = %error, "events listener could not connect");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Why listening stopped.
enum Ended {
    /// The connection was lost: listen again.
    Lost,
    NoClients,
    /// The tenant is no longer served: its streams were told and end.
    Unavailable,
}

/// Listens until the connection ends, no client is left, or the tenant stops being served.
async fn listen(
    state: &AppState,
    tenant: TenantId,
    hub: &Arc<Hub>,
    connected_before: bool,
) -> Result<Ended, String> {
    let pool = match admit_quietly(state, tenant).await {
        Ok(pool) => pool,
        Err(error) if error.is_tenant_unavailable() => {
            hub.publish_unavailable(error.code());
            return Ok(Ended::Unavailable);
        }
        Err(error) => return Err(error.to_string()),
    };
    let dedicated = pool.dedicated().await.map_err(|error| error.to_string())?;
    let (sender, mut receiver) = mpsc::channel(BACKLOG);
    let mut connection = dedicated.connection;
    let driver = tokio::spawn(async move {
        let mut messages =
            futures::stream::poll_fn(move |context| connection.poll_message(context));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let payload = serde_json::from_str(notification.payload())
                        .unwrap_or_else(|_| serde_json::json!({ "type": "resync" }));
                    if sender.try_send(payload).is_err() {
                        // The hub is behind: tell clients to reload rather than grow.
                        let _ = sender.try_send(serde_json::json!({ "type": "resync" }));
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let result = async {
        dedicated
            .client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|error| error.to_string())?;
        hub.set_listening(true);
        if connected_before {
            hub.publish_resync();
        }
        let mut tick = tokio::time::interval(state.events.heartbeat.min(Duration::from_secs(5)));
        loop {
            tokio::select! {
                payload = receiver.recv() => match payload {
                    Some(payload) if payload["type"] == "resync" => hub.publish_resync(),
                    Some(payload) => hub.publish(payload),
                    None => return Ok(Ended::Lost),
                },
                _ = tick.tick() => {
                    if state.events.retire(tenant, hub) {
                        return Ok(Ended::NoClients);
                    }
                    if let Err(error) = admit_quietly(state, tenant).await
                        && error.is_tenant_unavailable()
                    {
                        hub.publish_unavailable(error.code());
                        return Ok(Ended::Unavailable);
                    }
                }
            }
        }
    }
    .await;
    hub.set_listening(false);
    driver.abort();
    drop(dedicated.permit);
    result
}
