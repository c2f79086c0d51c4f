//! Live events: tickets, delivery within a second of the commit, replay after a
//! reconnect, the stream ending with its session, and nothing held after a disconnect.

use std::time::{Duration, Instant};

use tenancy_tests::eventually;
use tokio::sync::mpsc;

use super::*;

/// One server-sent event as a client parses it; `kind` `":"` is a heartbeat comment and
/// `"end"` the end of the stream.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub kind: String,
    pub data: Value,
    pub at: Instant,
}

/// A connected `GET /v1/events` client.
pub struct EventsClient {
    receiver: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EventsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventsClient {
    /// Opens the stream; the status and problem when it is refused.
    pub async fn open(
        platform: &Platform,
        query: &str,
        token: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<Self, (u16, Value)> {
        let mut request = platform
            .router
            .client
            .get(format!("{}/v1/events{query}", platform.router.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let mut response = request.send().await.expect("open the events stream");
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.json().await.unwrap_or(Value::Null);
            return Err((status, body));
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let _ = sender.send(parse(&block));
                }
            }
            let _ = sender.send(Received {
                id: String::new(),
                kind: "end".to_owned(),
                data: Value::Null,
                at: Instant::now(),
            });
        });
        Ok(Self { receiver, task })
    }

    /// The next event (heartbeats skipped), waiting at most `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = tokio::time::timeout(left, self.receiver.recv())
                .await
                .expect("an event in time")
                .expect("the stream task");
            if received.kind != ":" {
                return received;
            }
        }
    }

    /// The next event of `kind`, others skipped.
    pub async fn next_of(&mut self, kind: &str, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let event = self
                .next(deadline.saturating_duration_since(Instant::now()))
                .await;
            if event.kind == kind {
                return event;
            }
        }
    }

    /// Heartbeat comments received within `period`.
    pub async fn heartbeats_within(&mut self, period: Duration) -> usize {
        let deadline = Instant::now() + period;
        let mut count = 0;
        while let Ok(Some(received)) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.receiver.recv(),
        )
        .await
        {
            count += usize::from(received.kind == ":");
        }
        count
    }
}

fn parse(block: &str) -> Received {
    let mut received = Received {
        id: String::new(),
        kind: String::new(),
        data: Value::Null,
        at: Instant::now(),
    };
    for line in block.lines() {
        let field = |name: &str| {
            line.strip_prefix(name)
                .map(|rest| rest.strip_prefix(' ').unwrap_or(rest).to_owned())
        };
        if line.starts_with(':') {
            received.kind = ":".to_owned();
        } else if let Some(id) = field("id:") {
            received.id = id;
        } else if let Some(kind) = field("event:") {
            received.kind = kind;
        } else if let Some(data) = field("data:") {
            received.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        }
    }
    received
}

async fn ticket(platform: &Platform, token: &str) -> String {
    let (status, body) = platform
        .call(Method::POST, "/v1/events/ticket", token, None)
        .await;
    assert_eq!(status, 201, "{body}");
    body["ticket"].as_str().expect("a ticket").to_owned()
}

/// The router's own figure for a metric.
async fn gauge(platform: &Platform, name: &str) -> Option<i64> {
    let text = platform
        .router
        .client
        .get(format!("{}/metrics", platform.router.base_url))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn events_arrive_within_a_second_replay_after_a_reconnect_and_end_with_the_session() {
    let platform = Platform::start(&["acme"], &[("TENANCY_EVENTS_HEARTBEAT", "1s")]).await;
    let owner = platform.owner("acme").await;
    let role = platform.role(&owner, "clerk", &["customers.read"]).await;
    let clerk = platform
        .user(
            &owner,
            "clerk@acme.example",
            "the clerk's own password",
            &[&role],
        )
        .await;
    let clerk_token = access(
        &platform
            .sign_in("acme", "clerk@acme.example", "the clerk's own password")
            .await,
    );

    // A browser: a single-use ticket in the query string.
    let ticket = ticket(&platform, &clerk_token).await;
    let mut browser = EventsClient::open(&platform, &format!("?ticket={ticket}"), None, None)
        .await
        .expect("the ticket opens the stream");
    let (status, body) = EventsClient::open(&platform, &format!("?ticket={ticket}"), None, None)
        .await
        .err()
        .expect("a used ticket is refused");
    assert_problem(status, &body, 401, "invalid_ticket");
    let (status, body) = EventsClient::open(&platform, "", None, None)
        .await
        .err()
        .expect("no credentials");
    assert_problem(status, &body, 401, "missing_token");
    assert!(
        browser.heartbeats_within(Duration::from_millis(2500)).await >= 1,
        "heartbeats"
    );

    // A permission change reaches the connected client within a second of the commit.
    let started = Instant::now();
    let (status, _) = platform
        .call(
            Method::PUT,
            &format!("/v1/roles/{role}/permissions"),
            &owner,
            Some(json!({ "permissions": ["customers.read", "customers.write"] })),
        )
        .await;
    assert_eq!(status, 200);
    let event = browser
        .next_of("role.permissions_changed", Duration::from_secs(5))
        .await;
    assert_eq!(event.data["role_id"], role.as_str());
    let took = event.at.duration_since(started);
    assert!(
        took < Duration::from_secs(1),
        "delivered {took:?} after the request began"
    );

    // A reconnect with Last-Event-ID gets exactly what it missed; an unknown id a resync.
    let last = event.id.clone();
    drop(browser);
    let (status, _) = platform
        .call(
            Method::PATCH,
            &format!("/v1/roles/{role}"),
            &owner,
            Some(json!({ "description": "changed while away" })),
        )
        .await;
    assert_eq!(status, 200);
    let mut back = EventsClient::open(&platform, "", Some(&clerk_token), Some(&last))
        .await
        .expect("reconnect");
    let missed = back.next(Duration::from_secs(5)).await;
    assert_eq!(
        (missed.kind.as_str(), &missed.data["role_id"]),
        ("role.updated", &json!(role))
    );
    let mut stranger = EventsClient::open(&platform, "", Some(&clerk_token), Some("0-1"))
        .await
        .expect("reconnect");
    assert_eq!(stranger.next(Duration::from_secs(5)).await.kind, "resync");
    drop(stranger);

    // Disabling the user: its client is told, then its stream ends.
    let (status, _) = platform
        .call(
            Method::PATCH,
            &format!("/v1/users/{clerk}"),
            &owner,
            Some(json!({ "is_active": false })),
        )
        .await;
    assert_eq!(status, 200);
    let disabled = back.next_of("user.disabled", Duration::from_secs(5)).await;
    assert_eq!(disabled.data["user_id"], clerk.as_str());
    back.next_of("end", Duration::from_secs(5)).await;
    let (status, body) = EventsClient::open(&platform, "", Some(&clerk_token), None)
        .await
        .err()
        .expect("a disabled user cannot listen");
    assert_problem(status, &body, 401, "session_ended");
    drop(back);

    // A suspended tenant's streams are told, then end.
    let mut owner_stream = EventsClient::open(&platform, "", Some(&owner), None)
        .await
        .expect("the owner listens");
    let (status, body) = platform
        .app
        .call(
            Method::POST,
            "/v1/tenants/acme/suspend",
            Some(&platform.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let gone = owner_stream
        .next_of("tenant.unavailable", Duration::from_secs(10))
        .await;
    assert_eq!(gone.data["reason"], "tenant_suspended");
    owner_stream.next_of("end", Duration::from_secs(5)).await;
    drop(owner_stream);

    // A disconnected client frees everything: no client, no listener connection.
    eventually(
        Duration::from_secs(10),
        "events resources freed",
        async || {
            let clients = gauge(&platform, "tenancy_router_event_clients").await;
            let listeners = gauge(&platform, "tenancy_router_event_listeners").await;
            if clients == Some(0) && listeners == Some(0) {
                Ok(())
            } else {
                Err(format!("clients {clients:?}, listeners {listeners:?}"))
            }
        },
    )
    .await;
}
