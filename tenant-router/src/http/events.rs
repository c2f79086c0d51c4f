//! `GET /v1/events` (server-sent events) and `POST /v1/events/ticket`.
//!
//! A client authenticates with its bearer token, or (a browser's `EventSource` cannot send
//! headers) with a single-use ticket in `?ticket=`. It receives its tenant's role,
//! permission, user and session events; a reconnect with `Last-Event-ID` gets what it
//! missed, or a `resync`. Comment lines keep idle streams open through proxies. The stream
//! ends after the event that ends the client's own session (signed out, revoked, user
//! disabled or deleted).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::auth::not_a_user;
use super::table::Routes;
use crate::auth::secrets::{self, Kind};
use crate::error::{RouterError, RouterResult};
use crate::events::{Connected, Event};
use crate::extract::{Json, Query, Tenant, admit, named_tenant};
use crate::ids::{SessionId, UserId};
use crate::state::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .get("/v1/events", stream)
        .post("/v1/events/ticket", ticket)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamParams {
    ticket: Option<String>,
}

/// How long a new client waits for its tenant's listener to be listening.
const LISTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn invalid_ticket() -> RouterError {
    RouterError::Unauthorized {
        code: "invalid_ticket",
        detail: "the events ticket is not valid (unknown, used, expired, or its session has ended)"
            .to_owned(),
    }
}

/// Who listens: the tenant, and the user and session when it is a user.
struct Listener {
    tenant: tenancy_core::TenantId,
    user: Option<UserId>,
    session: Option<SessionId>,
}

/// Redeems a ticket: it is deleted as it is used, so it works once.
async fn redeem(state: &AppState, parts: &Parts, ticket: &str) -> RouterResult<Listener> {
    let presented = secrets::parse(Kind::EventsTicket, ticket).ok_or_else(invalid_ticket)?;
    let (entry, pool) = admit(state, presented.tenant).await?;
    if let Some(named) = named_tenant(&parts.headers, state.auth.base_domain.as_deref())?
        && named != entry.slug
    {
        return Err(RouterError::TenantMismatch);
    }
    let connection = pool.connection(&state.pools).await?;
    let row = connection
        .client
        .query_opt(
            "DELETE FROM event_tickets t USING sessions s, users u \
             WHERE t.ticket_hash = $1 AND t.expires_at > now() AND s.id = t.session_id \
               AND s.revoked_at IS NULL AND u.id = s.user_id AND u.is_active \
             RETURNING s.id, s.user_id",
            &[&presented.hash.as_slice()],
        )
        .await?
        .ok_or_else(invalid_ticket)?;
    Ok(Listener {
        tenant: entry.id,
        user: Some(row.get(1)),
        session: Some(row.get(0)),
    })
}

async fn stream(
    State(state): State<AppState>,
    Query(params): Query<StreamParams>,
    mut parts: Parts,
) -> RouterResult<impl IntoResponse> {
    let listener = match params.ticket {
        Some(ticket) => redeem(&state, &parts, &ticket).await?,
        None => {
            let tenant = Tenant::from_request_parts(&mut parts, &state).await?;
            drop(tenant.signed_in().await?);
            let (user, session) = tenant.user().unzip();
            Listener {
                tenant: tenant.entry.id,
                user,
                session,
            }
        }
    };
    let last_event_id = parts
        .headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| id.len() <= 100);
    let connected = state.events.connect(&state, listener.tenant)?;
    if !connected.hub.wait_listening(LISTEN_WAIT).await {
        return Err(RouterError::EventsUnavailable);
    }
    let subscription = connected.hub.subscribe(last_event_id);
    let feed = Feed {
        missed: subscription.missed.into(),
        live: subscription.live,
        user: listener.user,
        session: listener.session,
        ended: false,
        connected,
    };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        if feed.ended {
            return None;
        }
        let event = feed.next().await?;
        feed.ended = feed.ends_own_session(&event);
        let sse = SseEvent::default()
            .id(event.id)
            .event(event.kind)
            .data(event.data.to_string());
        Some((Ok::<_, Infallible>(sse), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.events.heartbeat)))
}

/// A client's place in its tenant's feed; dropping it frees everything it held.
struct Feed {
    missed: VecDeque<Event>,
    live: tokio::sync::broadcast::Receiver<Event>,
    user: Option<UserId>,
    session: Option<SessionId>,
    ended: bool,
    connected: Connected,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        if let Some(event) = self.missed.pop_front() {
            return Some(event);
        }
        match self.live.recv().await {
            Ok(event) => Some(event),
            // Too slow to keep up: it missed some; it reloads.
            Err(RecvError::Lagged(_)) => Some(Event::resync(self.connected.hub.latest_id())),
            Err(RecvError::Closed) => None,
        }
    }

    fn ends_own_session(&self, event: &Event) -> bool {
        let names = |field: &str, id: Option<String>| {
            id.is_some_and(|id| event.data[field].as_str() == Some(id.as_str()))
        };
        match event.kind.as_str() {
            "session.revoked" => names("session_id", self.session.map(|id| id.to_string())),
            "user.disabled" | "user.deleted" => {
                names("user_id", self.user.map(|id| id.to_string()))
            }
            crate::events::UNAVAILABLE => true,
            _ => false,
        }
    }
}

#[derive(Serialize)]
struct Ticket {
    ticket: String,
    expires_in: u64,
}

/// A single-use ticket for `GET /v1/events?ticket=`, for the caller's session.
async fn ticket(tenant: Tenant) -> RouterResult<impl IntoResponse> {
    let (_, session) = tenant.user().ok_or_else(not_a_user)?;
    let connection = tenant.signed_in().await?;
    let ttl = tenant.state().events.ticket_ttl;
    let (text, hash) = secrets::mint(Kind::EventsTicket, tenant.entry.id);
    connection
        .client
        .execute("DELETE FROM event_tickets WHERE expires_at < now()", &[])
        .await?;
    connection
        .client
        .execute(
            "INSERT INTO event_tickets (ticket_hash, session_id, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3))",
            &[&hash.as_slice(), &session, &ttl.as_secs_f64()],
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Ticket {
            ticket: text,
            expires_in: ttl.as_secs(),
        }),
    ))
}
