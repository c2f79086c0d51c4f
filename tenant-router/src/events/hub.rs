//! One tenant's events as this router sees them: a bounded replay buffer and a broadcast to
//! the tenant's connected clients. Ids are `<epoch>-<seq>`: the epoch is this hub's own
//! (random), so an id from another router or an earlier hub is recognised as unknown and
//! answered with a `resync` event rather than a silent gap.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::broadcast;

/// The event after which every stream of the tenant ends.
pub const UNAVAILABLE: &str = "tenant.unavailable";

/// One event as a client receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// The SSE event name: `role.permissions_changed`, `user.disabled`, …, or `resync`.
    pub kind: String,
    pub data: Value,
}

impl Event {
    /// Tells a client that events may have been missed: reload what it shows.
    pub fn resync(id: String) -> Self {
        Self {
            id,
            kind: "resync".to_owned(),
            data: serde_json::json!({ "type": "resync" }),
        }
    }
}

struct Buffer {
    next_seq: u64,
    events: VecDeque<(u64, Event)>,
}

pub struct Hub {
    epoch: u32,
    capacity: usize,
    buffer: Mutex<Buffer>,
    sender: broadcast::Sender<Event>,
    clients: AtomicUsize,
    /// Whether the listener is listening now: a client is answered only once it is, so
    /// a stream that opened never misses a change committed after it opened.
    listening: tokio::sync::watch::Sender<bool>,
}

/// What a new subscriber gets: the events it missed (or a `resync`), then the live ones.
pub struct Subscription {
    pub missed: Vec<Event>,
    pub live: broadcast::Receiver<Event>,
}

impl Hub {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            epoch: rand::random(),
            capacity,
            buffer: Mutex::new(Buffer {
                next_seq: 1,
                events: VecDeque::with_capacity(capacity),
            }),
            sender: broadcast::channel(capacity).0,
            clients: AtomicUsize::new(0),
            listening: tokio::sync::watch::channel(false).0,
        }
    }

    /// The listener tells whether it is listening.
    pub fn set_listening(&self, listening: bool) {
        self.listening.send_replace(listening);
    }

    /// Waits until the listener is listening, at most `timeout`; whether it is.
    pub async fn wait_listening(&self, timeout: std::time::Duration) -> bool {
        let mut receiver = self.listening.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|listening| *listening))
            .await
            .is_ok_and(|result| result.is_ok())
    }

    fn id(&self, seq: u64) -> String {
        format!("{:08x}-{seq}", self.epoch)
    }

    /// Records a change (the payload the database sent) and sends it to every client.
    pub fn publish(&self, data: Value) {
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("change")
            .to_owned();
        self.push(kind, data);
    }

    /// Tells every client that the tenant is no longer served (suspended, deleted, being
    /// restored or migrated): their streams end after this event.
    pub fn publish_unavailable(&self, reason: &str) {
        self.push(
            UNAVAILABLE.to_owned(),
            serde_json::json!({ "type": UNAVAILABLE, "reason": reason }),
        );
    }

    /// Sends every client a `resync` (the feed had a gap: a lost database connection).
    pub fn publish_resync(&self) {
        self.push("resync".to_owned(), serde_json::json!({ "type": "resync" }));
    }

    fn push(&self, kind: String, data: Value) {
        let mut buffer = self.buffer.lock();
        let seq = buffer.next_seq;
        buffer.next_seq += 1;
        let event = Event {
            id: self.id(seq),
            kind,
            data,
        };
        if buffer.events.len() == self.capacity {
            buffer.events.pop_front();
        }
        buffer.events.push_back((seq, event.clone()));
        // Sent under the lock, so that a subscriber's replay and live feed meet exactly.
        let _ = self.sender.send(event);
    }

    /// Subscribes a client that last saw `last_event_id` (from `Last-Event-ID`).
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let buffer = self.buffer.lock();
        let live = self.sender.subscribe();
        let missed = match last_event_id {
            None => Vec::new(),
            Some(id) => match self.seq_of(id) {
                // Ours, and nothing after it has left the buffer: replay exactly.
                Some(seq)
                    if seq < buffer.next_seq
                        && buffer
                            .events
                            .front()
                            .is_none_or(|(first, _)| *first <= seq + 1) =>
                {
                    buffer
                        .events
                        .iter()
                        .filter(|(event_seq, _)| *event_seq > seq)
                        .map(|(_, event)| event.clone())
                        .collect()
                }
                _ => vec![Event::resync(self.id(buffer.next_seq - 1))],
            },
        };
        Subscription { missed, live }
    }

    fn seq_of(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.split_once('-')?;
        (u32::from_str_radix(epoch, 16).ok()? == self.epoch)
            .then(|| seq.parse().ok())
            .flatten()
    }

    /// Counts a connected client until the guard is dropped.
    pub fn join(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::SeqCst);
        ClientGuard { hub: self.clone() }
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// The id of the newest event (for a `resync` sent to a lagging client).
    pub fn latest_id(&self) -> String {
        let buffer = self.buffer.lock();
        self.id(buffer.next_seq - 1)
    }
}

/// A connected client of a hub.
pub struct ClientGuard {
    hub: Arc<Hub>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(n: u64) -> Value {
        json!({ "type": "role.updated", "n": n })
    }

    #[test]
    fn a_reconnect_gets_exactly_what_it_missed() {
        let hub = Hub::new(4);
        hub.publish(change(1));
        let first = hub.latest_id();
        hub.publish(change(2));
        hub.publish(change(3));
        let subscription = hub.subscribe(Some(&first));
        let missed: Vec<&Value> = subscription
            .missed
            .iter()
            .map(|event| &event.data)
            .collect();
        assert_eq!(missed, [&change(2), &change(3)]);
        assert_eq!(subscription.missed[0].kind, "role.updated");
    }

    #[test]
    fn an_id_too_old_or_from_elsewhere_gets_a_resync() {
        let hub = Hub::new(2);
        hub.publish(change(1));
        let first = hub.latest_id();
        for n in 2..=5 {
            hub.publish(change(n));
        }
        let subscription = hub.subscribe(Some(&first));
        assert_eq!(subscription.missed.len(), 1);
        assert_eq!(subscription.missed[0].kind, "resync");
        let other = Hub::new(2);
        other.publish(change(1));
        let subscription = hub.subscribe(Some(&other.latest_id()));
        assert_eq!(subscription.missed[0].kind, "resync");
        let subscription = hub.subscribe(Some("garbage"));
        assert_eq!(subscription.missed[0].kind, "resync");
    }

    #[test]
    fn live_events_follow_the_replay_without_a_gap() {
        let hub = Hub::new(8);
        hub.publish(change(1));
        let last = hub.latest_id();
        let mut subscription = hub.subscribe(Some(&last));
        assert!(subscription.missed.is_empty());
        hub.publish(change(2));
        let event = subscription.live.try_recv().expect("the live event");
        assert_eq!(event.data, change(2));
    }

    #[test]
    fn clients_are_counted_while_connected() {
        let hub = Arc::new(Hub::new(1));
        let guard = hub.join();
        assert_eq!(hub.clients(), 1);
        drop(guard);
        assert_eq!(hub.clients(), 0);
    }
}
