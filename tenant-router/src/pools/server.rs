//! Per database server, the scheduler of the router's connections there.
//!
//! The server's `connection_budget` is shared by every tenant on it. Each tenant keeps its
//! idle connections (warm: a request takes one without connecting); the scheduler decides
//! who opens a connection, who waits, and which idle connection closes to make room:
//!
//! - a request takes an idle connection of its tenant if there is one;
//! - else it opens one while the budget has room, a second or later one only when no other
//!   tenant waits;
//! - else, when nobody waits, it closes the least valuable idle connection on the server
//!   (value: the tenant's requests, decayed with a 10 s half-life, per connection it holds:
//!   frequency-aware, and a tenant's extra connections go before anyone's only one) and
//!   opens in its place, for a tenant with none; a busy tenant's extra connection comes
//!   from room in the budget, or from a connection idle for `LONG_IDLE` of a tenant that
//!   has all but stopped (`IDLE_WORTH`) and worth less than the extra would be (closing
//!   recently used connections for extras made their tenants reopen them, measured as
//!   churn in the router benchmark; but a budget full of connections nobody uses any more
//!   must not hold a busy tenant to one);
//! - else it waits, bounded: for its own tenant's connection (handed over as it comes back)
//!   when the tenant has one, else in the server's queue, first come first served.
//!
//! A connection coming back goes to a waiter of its own tenant; else, when others wait, a
//! tenant's extra connection closes and its place goes to the longest waiter; a tenant's only
//! connection stays warm unless the longest waiter is worth as much or has waited a quarter
//! of the bounded wait (no starvation).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::ClientWrapper;
use parking_lot::Mutex;
use tenancy_core::TenantId;
use tokio::sync::oneshot;
use tokio_postgres::NoTls;

use super::breaker::Breaker;
use super::rate::OpenRate;
use crate::error::{RouterError, RouterResult};
use crate::tenant::ServerRef;

/// A tenant's request count halves every this many seconds (its value as a warm tenant).
const HALF_LIFE_SECONDS: f64 = 10.0;

/// An idle connection unused this long, of a tenant whose decayed request count is below
/// `IDLE_WORTH`, may close for a busy tenant's extra connection. A tenant still seeing a
/// request a second or so keeps its connection: closing it for an extra (which a server
/// already busy does not need) only starts a chain of reopens, each closing another's.
const LONG_IDLE: Duration = Duration::from_secs(5);
const IDLE_WORTH: f64 = 1.0;

/// How often, at most, a server's idle connections are searched for one to close for an
/// extra connection (the search visits every tenant on the server, under its lock).
const EXTRA_SEARCH_EVERY: Duration = Duration::from_millis(50);

/// Where a tenant's connections go and as whom.
pub struct Target {
    pub server: ServerRef,
    pub database: String,
    pub role: String,
    pub password: secrecy::SecretString,
    pub config: tokio_postgres::Config,
}

/// An open connection and what it is bound to.
pub struct PgConn {
    pub client: ClientWrapper,
    target: Arc<Target>,
    /// When it last came back (idle since).
    since: Instant,
}

/// Per server: counted since the router started.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections opened.
    pub opened: AtomicU64,
    /// Requests that got a connection, and of them those served by a warm one.
    pub checkouts: AtomicU64,
    pub reused: AtomicU64,
    /// Time requests waited for their connection, µs.
    pub wait_micros: AtomicU64,
    /// Idle connections closed to make room for another tenant's.
    pub evicted: AtomicU64,
}

/// What the router holds per database server.
pub struct ServerPool {
    pub server: ServerRef,
    pub breaker: Breaker,
    pub counts: Counts,
    opens: OpenRate,
    /// Connections being opened at once (FIFO: the first to ask opens first).
    opening: tokio::sync::Semaphore,
    /// The bounded wait of a request for its connection.
    wait: Duration,
    state: Mutex<State>,
}

struct State {
    budget: usize,
    /// Connections open or being opened (each takes one of the budget).
    open: usize,
    tenants: HashMap<TenantId, Slot>,
    /// Requests waiting for a place in the budget, oldest first.
    queue: VecDeque<Waiter>,
    /// When idle connections may next be searched for one to close for an extra.
    next_extra_search: Instant,
}

/// One tenant's share of the server.
struct Slot {
    /// What its connections must be bound to; `None`: no longer served here (retired).
    target: Option<Arc<Target>>,
    idle: Vec<PgConn>,
    /// Connections taken by requests, or being opened for them.
    busy: usize,
    /// Its requests waiting for one of its connections to come back.
    waiting: VecDeque<Waiter>,
    /// Requests, decayed to `touched`.
    score: f64,
    touched: Instant,
}

struct Waiter {
    tenant: TenantId,
    since: Instant,
    /// A connection of the tenant's own (`LISTEN`), not one of its pooled ones.
    dedicated: bool,
    sender: oneshot::Sender<Grant>,
}

/// What a waiter is given: a warm connection, or a place in the budget to open one.
enum Grant {
    Connection(Connection),
    Place(Reservation),
}

enum Step {
    Ready(PgConn),
    Open,
    Wait(oneshot::Receiver<Grant>),
}

/// A connection taken from a server's scheduler; given back when dropped.
pub struct Connection {
    conn: Option<PgConn>,
    server: Arc<ServerPool>,
    tenant: TenantId,
}

/// A place in a server's budget, given back when dropped unless a connection took it.
pub struct Reservation {
    server: Arc<ServerPool>,
    tenant: TenantId,
    dedicated: bool,
    armed: bool,
}

impl Slot {
    fn new(target: Arc<Target>, now: Instant) -> Self {
        Self {
            target: Some(target),
            idle: Vec::new(),
            busy: 0,
            waiting: VecDeque::new(),
            score: 0.0,
            touched: now,
        }
    }

    fn serves(&self, target: &Arc<Target>) -> bool {
        self.target
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, target))
    }

    fn decayed(&self, now: Instant) -> f64 {
        let age = now.saturating_duration_since(self.touched).as_secs_f64();
        self.score * (-age * std::f64::consts::LN_2 / HALF_LIFE_SECONDS).exp()
    }

    fn touch(&mut self, now: Instant) {
        self.score = self.decayed(now) + 1.0;
        self.touched = now;
    }

    fn held(&self) -> usize {
        self.busy + self.idle.len()
    }

    /// What keeping one of its connections is worth: its recent requests per connection.
    fn value(&self, now: Instant) -> f64 {
        self.decayed(now) / self.held().max(1) as f64
    }
}

impl ServerPool {
    pub fn new(server: &ServerRef, opens: super::OpenLimits, wait: Duration) -> Self {
        Self {
            server: server.clone(),
            breaker: Breaker::default(),
            counts: Counts::default(),
            opens: OpenRate::new(opens.per_second),
            opening: tokio::sync::Semaphore::new(
                usize::try_from(opens.at_once.max(1)).unwrap_or(1),
            ),
            wait,
            state: Mutex::new(State {
                budget: usize::try_from(server.connection_budget.max(1)).unwrap_or(1),
                open: 0,
                tenants: HashMap::new(),
                queue: VecDeque::new(),
                next_extra_search: Instant::now(),
            }),
        }
    }

    /// A connection for `tenant` bound to `target`, the tenant holding at most `max`;
    /// waits at most the bounded wait (then 503 `pool_timeout`).
    pub async fn checkout(
        self: &Arc<Self>,
        tenant: TenantId,
        target: &Arc<Target>,
        max: usize,
    ) -> RouterResult<Connection> {
        if self.breaker.is_open() {
            return Err(RouterError::ServerUnavailable);
        }
        let started = Instant::now();
        let step = self
            .state
            .lock()
            .checkout(self, tenant, target, max, started);
        let connection = match step {
            Step::Ready(conn) => {
                self.counts.reused.fetch_add(1, Ordering::Relaxed);
                Ok(Connection::new(self.clone(), tenant, conn))
            }
            Step::Open => {
                self.open(Reservation::new(self.clone(), tenant, false), target)
                    .await
            }
            Step::Wait(receiver) => match self.wait_for(receiver).await? {
                Grant::Connection(connection) => {
                    self.counts.reused.fetch_add(1, Ordering::Relaxed);
                    Ok(connection)
                }
                Grant::Place(reservation) => self.open(reservation, target).await,
            },
        }?;
        self.counts.checkouts.fetch_add(1, Ordering::Relaxed);
        let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counts.wait_micros.fetch_add(waited, Ordering::Relaxed);
        Ok(connection)
    }

    /// A place in the budget for a connection of the tenant's own, outside its pooled
    /// ones; waits at most the bounded wait.
    pub async fn reserve(self: &Arc<Self>, tenant: TenantId) -> RouterResult<Reservation> {
        if self.breaker.is_open() {
            return Err(RouterError::ServerUnavailable);
        }
        let receiver = {
            let mut state = self.state.lock();
            let now = Instant::now();
            if !state.has_waiters() && (state.open < state.budget || state.evict_one(self, now)) {
                state.open += 1;
                return Ok(Reservation::new(self.clone(), tenant, true));
            }
            let (sender, receiver) = oneshot::channel();
            state.queue.push_back(Waiter {
                tenant,
                since: now,
                dedicated: true,
                sender,
            });
            receiver
        };
        match self.wait_for(receiver).await? {
            Grant::Place(reservation) => Ok(reservation),
            Grant::Connection(_) => Err(RouterError::PoolTimeout),
        }
    }

    /// Opens a connection in a reserved place, at the server's rate of opens.
    async fn open(
        self: &Arc<Self>,
        reservation: Reservation,
        target: &Arc<Target>,
    ) -> RouterResult<Connection> {
        let _turn = tokio::time::timeout(self.wait, self.opening.acquire())
            .await
            .map_err(|_| RouterError::PoolTimeout)?
            .map_err(|_| RouterError::PoolTimeout)?;
        if !self.opens.take(self.wait).await {
            return Err(RouterError::PoolTimeout);
        }
        let (client, connection) = self.connect(&target.config).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let tenant = reservation.tenant;
        reservation.disarm();
        Ok(Connection::new(
            self.clone(),
            tenant,
            PgConn {
                client: ClientWrapper::new(client, task),
                target: target.clone(),
                since: Instant::now(),
            },
        ))
    }

    /// Connects, telling the breaker how it went.
    pub async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> RouterResult<(
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    )> {
        match config.connect(NoTls).await {
            Ok(connected) => {
                self.breaker.success();
                self.counts.opened.fetch_add(1, Ordering::Relaxed);
                Ok(connected)
            }
            Err(error) => {
                if error.as_db_error().is_none() {
                    self.breaker.failure();
                }
                Err(error.into())
            }
        }
    }

    async fn wait_for(&self, mut receiver: oneshot::Receiver<Grant>) -> RouterResult<Grant> {
        match tokio::time::timeout(self.wait, &mut receiver).await {
            Ok(Ok(grant)) => Ok(grant),
            // The tenant stopped being served here while it waited.
            Ok(Err(_)) => Err(RouterError::PoolTimeout),
            Err(_) => {
                // Too late; but a grant sent just now is used rather than lost.
                receiver.close();
                receiver.try_recv().map_err(|_| RouterError::PoolTimeout)
            }
        }
    }

    fn give_back(self: &Arc<Self>, tenant: TenantId, conn: PgConn) {
        self.state
            .lock()
            .give_back(self, tenant, conn, Instant::now());
    }

    fn release(self: &Arc<Self>, tenant: TenantId, dedicated: bool) {
        let mut state = self.state.lock();
        state.open -= 1;
        if !dedicated {
            state.forget_busy(tenant);
        }
        state.serve(self, Instant::now());
    }

    /// The tenant is no longer served here (moved, restored, suspended, deleted): its idle
    /// connections close now, busy ones as they come back, its waiters are refused.
    pub fn retire(self: &Arc<Self>, tenant: TenantId) {
        let mut state = self.state.lock();
        state.retire(tenant);
        state.serve(self, Instant::now());
    }

    /// Retires every tenant (notifications may have been missed).
    pub fn retire_all(self: &Arc<Self>) {
        let mut state = self.state.lock();
        let tenants: Vec<TenantId> = state.tenants.keys().copied().collect();
        for tenant in tenants {
            state.retire(tenant);
        }
        state.serve(self, Instant::now());
    }

    /// Applies a new budget: a larger one serves waiters at once; a smaller one closes
    /// idle connections now and busy ones as they come back, until within it. Returns
    /// whether it changed.
    pub fn set_budget(self: &Arc<Self>, budget: u32) -> bool {
        let budget = usize::try_from(budget.max(1)).unwrap_or(1);
        let mut state = self.state.lock();
        let changed = state.budget != budget;
        state.budget = budget;
        state.serve(self, Instant::now());
        changed
    }

    /// Closes connections idle for `idle`, and forgets tenants unseen that long; gives
    /// places to waiters that have waited long enough to take anyone's idle connection.
    pub fn collect_idle(self: &Arc<Self>, idle: Duration) {
        let mut state = self.state.lock();
        let now = Instant::now();
        let mut closed = 0;
        state.tenants.retain(|_, slot| {
            let before = slot.idle.len();
            slot.idle
                .retain(|conn| now.saturating_duration_since(conn.since) < idle);
            closed += before - slot.idle.len();
            slot.held() > 0
                || !slot.waiting.is_empty()
                || now.saturating_duration_since(slot.touched) < idle
        });
        state.open -= closed;
        state.serve(self, now);
    }

    /// Gives places to waiters that have waited a quarter of the bounded wait, closing
    /// whichever idle connections it takes (a waiter is never left behind warm but idle
    /// connections for long).
    pub fn serve_aged(self: &Arc<Self>) {
        self.state.lock().serve(self, Instant::now());
    }

    /// The busiest tenants with no connection open here now, up to `count`: what to warm
    /// after the server came back.
    pub fn busiest_cold(&self, count: usize) -> Vec<(TenantId, Arc<Target>)> {
        let mut state = self.state.lock();
        let now = Instant::now();
        // Connections the server ended (it restarted) are not warm.
        let mut closed = 0;
        for slot in state.tenants.values_mut() {
            let before = slot.idle.len();
            slot.idle.retain(|conn| !conn.client.is_closed());
            closed += before - slot.idle.len();
        }
        state.open -= closed;
        let mut cold: Vec<(f64, TenantId, Arc<Target>)> = state
            .tenants
            .iter()
            .filter(|(_, slot)| slot.held() == 0)
            .filter_map(|(id, slot)| Some((slot.decayed(now), *id, slot.target.clone()?)))
            .collect();
        cold.sort_by(|a, b| b.0.total_cmp(&a.0));
        cold.into_iter()
            .take(count)
            .map(|(_, id, target)| (id, target))
            .collect()
    }

    pub fn budget(&self) -> u32 {
        u32::try_from(self.state.lock().budget).unwrap_or(u32::MAX)
    }

    /// Connections open (or being opened) now, requests waiting, tenants known.
    pub fn load(&self) -> (u32, usize) {
        let state = self.state.lock();
        let waiting = state.queue.len()
            + state
                .tenants
                .values()
                .map(|slot| slot.waiting.len())
                .sum::<usize>();
        (u32::try_from(state.open).unwrap_or(u32::MAX), waiting)
    }
}

impl State {
    fn retire(&mut self, tenant: TenantId) {
        let Some(slot) = self.tenants.get_mut(&tenant) else {
            return;
        };
        slot.target = None;
        slot.waiting.clear();
        let closed = std::mem::take(&mut slot.idle).len();
        if slot.busy == 0 {
            self.tenants.remove(&tenant);
        }
        self.open -= closed;
        self.queue.retain(|waiter| waiter.tenant != tenant);
    }

    fn checkout(
        &mut self,
        server: &Arc<ServerPool>,
        tenant: TenantId,
        target: &Arc<Target>,
        max: usize,
        now: Instant,
    ) -> Step {
        let slot = self
            .tenants
            .entry(tenant)
            .or_insert_with(|| Slot::new(target.clone(), now));
        if !slot.serves(target) {
            // Bound elsewhere before (restored, new password): nothing of the old binding
            // is used again.
            slot.target = Some(target.clone());
            let closed = std::mem::take(&mut slot.idle).len();
            self.open -= closed;
        }
        slot.touch(now);
        let mut closed = 0;
        let mut ready = None;
        while let Some(conn) = slot.idle.pop() {
            if conn.client.is_closed() {
                closed += 1;
                continue;
            }
            slot.busy += 1;
            ready = Some(conn);
            break;
        }
        let held = slot.busy;
        self.open -= closed;
        if let Some(conn) = ready {
            if closed > 0 {
                self.serve(server, now);
            }
            return Step::Ready(conn);
        }
        // (Waiters that gave up are dropped from the queue's head first.)
        let nobody_waits = !self.has_waiters();
        if held < max
            && (held == 0 || nobody_waits)
            && (self.open < self.budget
                || (held == 0 && nobody_waits && self.evict_one(server, now))
                || (held > 0 && nobody_waits && self.evict_for_extra(server, tenant, held, now)))
        {
            self.open += 1;
            self.tenants.get_mut(&tenant).expect("present").busy += 1;
            return Step::Open;
        }
        let (sender, receiver) = oneshot::channel();
        let waiter = Waiter {
            tenant,
            since: now,
            dedicated: false,
            sender,
        };
        if held > 0 {
            self.tenants
                .get_mut(&tenant)
                .expect("present")
                .waiting
                .push_back(waiter);
        } else {
            self.queue.push_back(waiter);
            self.serve(server, now);
        }
        Step::Wait(receiver)
    }

    fn give_back(
        &mut self,
        server: &Arc<ServerPool>,
        tenant: TenantId,
        conn: PgConn,
        now: Instant,
    ) {
        let over_budget = self.open > self.budget;
        let Some(slot) = self.tenants.get_mut(&tenant) else {
            // Cannot happen (a slot with busy connections is kept); close it regardless.
            self.open -= 1;
            self.serve(server, now);
            return;
        };
        slot.busy -= 1;
        let current = slot
            .target
            .as_ref()
            .is_some_and(|target| Arc::ptr_eq(target, &conn.target));
        if !current || over_budget || conn.client.is_closed() {
            drop(conn);
            self.open -= 1;
            self.forget_busy_after(tenant);
            self.serve(server, now);
            return;
        }
        // Its own requests first: they wait for exactly this.
        let mut conn = conn;
        while let Some(waiter) = slot.waiting.pop_front() {
            slot.busy += 1;
            let connection = Connection::new(server.clone(), tenant, conn);
            match waiter.sender.send(Grant::Connection(connection)) {
                Ok(()) => return,
                Err(grant) => {
                    slot.busy -= 1;
                    conn = grant.disarm_connection();
                }
            }
        }
        conn.since = now;
        // Others wait and the tenant holds more: its extra connection makes room.
        let holds_more = slot.held() > 0;
        if holds_more && self.has_waiters() {
            drop(conn);
            server.counts.evicted.fetch_add(1, Ordering::Relaxed);
            self.open -= 1;
        } else if let Some(slot) = self.tenants.get_mut(&tenant) {
            slot.idle.push(conn);
        }
        self.serve(server, now);
    }

    fn has_waiters(&mut self) -> bool {
        while self
            .queue
            .front()
            .is_some_and(|waiter| waiter.sender.is_closed())
        {
            self.queue.pop_front();
        }
        !self.queue.is_empty()
    }

    /// A pooled place of the tenant's was given up (its opening failed or was abandoned).
    fn forget_busy(&mut self, tenant: TenantId) {
        if let Some(slot) = self.tenants.get_mut(&tenant) {
            slot.busy -= 1;
        }
        self.forget_busy_after(tenant);
    }

    /// After one of the tenant's connections closed: a retired tenant holding nothing is
    /// forgotten; requests waiting for its connections when it holds none any more join
    /// the server's queue, at its head (they came before whoever waits there).
    fn forget_busy_after(&mut self, tenant: TenantId) {
        let Some(slot) = self.tenants.get_mut(&tenant) else {
            return;
        };
        if slot.target.is_none() && slot.held() == 0 {
            self.tenants.remove(&tenant);
            return;
        }
        if slot.held() == 0 {
            let orphans = std::mem::take(&mut slot.waiting);
            for waiter in orphans.into_iter().rev() {
                self.queue.push_front(waiter);
            }
        }
    }

    /// The idle connection on the server worth least now, and its worth.
    fn least_valuable_idle(&self, now: Instant) -> Option<(TenantId, f64)> {
        self.least_valuable_idle_where(now, |_, _| true)
    }

    /// As [`State::least_valuable_idle`], among the tenants `eligible` admits.
    fn least_valuable_idle_where(
        &self,
        now: Instant,
        eligible: impl Fn(TenantId, &Slot) -> bool,
    ) -> Option<(TenantId, f64)> {
        self.tenants
            .iter()
            .filter(|(id, slot)| !slot.idle.is_empty() && eligible(**id, slot))
            .map(|(id, slot)| (*id, slot.value(now)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Closes the idle connection worth least, if any. The place it held is handed on by
    /// the caller.
    fn evict_one(&mut self, server: &ServerPool, now: Instant) -> bool {
        let Some((victim, _)) = self.least_valuable_idle(now) else {
            return false;
        };
        self.close_idle(victim);
        server.counts.evicted.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Closes, for an extra connection of `tenant` (holding `held`), the least valuable
    /// connection idle for `LONG_IDLE` of a tenant worth less than `IDLE_WORTH` on the
    /// server, if it is worth less than the extra would be; searches at most every
    /// `EXTRA_SEARCH_EVERY`.
    fn evict_for_extra(
        &mut self,
        server: &ServerPool,
        tenant: TenantId,
        held: usize,
        now: Instant,
    ) -> bool {
        if now < self.next_extra_search {
            return false;
        }
        self.next_extra_search = now + EXTRA_SEARCH_EVERY;
        let Some(worth) = self
            .tenants
            .get(&tenant)
            .map(|slot| slot.decayed(now) / (held + 1) as f64)
        else {
            return false;
        };
        // The longest idle of a tenant's connections is its first.
        let victim = self.least_valuable_idle_where(now, |id, slot| {
            id != tenant
                && slot.decayed(now) < IDLE_WORTH
                && slot
                    .idle
                    .first()
                    .is_some_and(|conn| now.saturating_duration_since(conn.since) >= LONG_IDLE)
        });
        match victim {
            Some((victim, value)) if value < worth => {
                self.close_idle(victim);
                server.counts.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    fn close_idle(&mut self, tenant: TenantId) {
        if let Some(slot) = self.tenants.get_mut(&tenant) {
            // The longest idle goes first (the newest is taken first by requests).
            if !slot.idle.is_empty() {
                slot.idle.remove(0);
                self.open -= 1;
            }
        }
    }

    /// Gives places to waiters, oldest first: free places in the budget; then idle
    /// connections worth no more than the waiter's tenant (or any, once it has waited a
    /// quarter of the bounded wait). Over budget (it was lowered), idle connections close
    /// first.
    fn serve(&mut self, server: &Arc<ServerPool>, now: Instant) {
        let aged = server.wait / 4;
        while self.open > self.budget {
            let Some((victim, _)) = self.least_valuable_idle(now) else {
                break;
            };
            self.close_idle(victim);
            server.counts.evicted.fetch_add(1, Ordering::Relaxed);
        }
        while self.has_waiters() {
            let head = self.queue.front().expect("has waiters");
            if self.open >= self.budget {
                if self.open > self.budget {
                    return;
                }
                let head_value = self
                    .tenants
                    .get(&head.tenant)
                    .map_or(0.0, |slot| slot.decayed(now));
                let waited_long = now.saturating_duration_since(head.since) >= aged;
                let Some((victim, value)) = self.least_valuable_idle(now) else {
                    return;
                };
                if !waited_long && value > head_value {
                    return;
                }
                self.close_idle(victim);
                server.counts.evicted.fetch_add(1, Ordering::Relaxed);
            }
            let waiter = self.queue.pop_front().expect("has waiters");
            self.open += 1;
            if !self.grant_place(server, waiter) {
                self.open -= 1;
            }
        }
    }

    /// Gives a waiter a place to open a connection in (the budget already counts it).
    fn grant_place(&mut self, server: &Arc<ServerPool>, waiter: Waiter) -> bool {
        if !waiter.dedicated {
            match self.tenants.get_mut(&waiter.tenant) {
                Some(slot) if slot.target.is_some() => slot.busy += 1,
                _ => return false,
            }
        }
        let reservation = Reservation::new(server.clone(), waiter.tenant, waiter.dedicated);
        match waiter.sender.send(Grant::Place(reservation)) {
            Ok(()) => true,
            Err(grant) => {
                grant.disarm_place();
                if !waiter.dedicated
                    && let Some(slot) = self.tenants.get_mut(&waiter.tenant)
                {
                    slot.busy -= 1;
                }
                false
            }
        }
    }
}

impl Grant {
    /// The connection of a grant that could not be delivered, without giving it back
    /// (the scheduler, holding its lock, decides what becomes of it).
    fn disarm_connection(self) -> PgConn {
        match self {
            Grant::Connection(mut connection) => connection.conn.take().expect("a connection"),
            Grant::Place(_) => unreachable!("only connections are handed over"),
        }
    }

    fn disarm_place(self) {
        match self {
            Grant::Place(reservation) => reservation.disarm(),
            Grant::Connection(_) => unreachable!("only places are granted"),
        }
    }
}

impl Connection {
    fn new(server: Arc<ServerPool>, tenant: TenantId, conn: PgConn) -> Self {
        Self {
            conn: Some(conn),
            server,
            tenant,
        }
    }
}

impl std::ops::Deref for Connection {
    type Target = PgConn;

    fn deref(&self) -> &PgConn {
        self.conn.as_ref().expect("a connection until dropped")
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.server.give_back(self.tenant, conn);
        }
    }
}

impl Reservation {
    fn new(server: Arc<ServerPool>, tenant: TenantId, dedicated: bool) -> Self {
        Self {
            server,
            tenant,
            dedicated,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.server.release(self.tenant, self.dedicated);
        }
    }
}
