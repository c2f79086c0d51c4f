//! The tenant directory: what the router knows about each tenant (status, server,
//! database, role and its password, plan limits), read from the catalog and cached.
//!
//! An entry is dropped as soon as the catalog announces a change (`LISTEN`, see
//! [`crate::listener`]); a TTL is the safety net, and "no such tenant" is remembered briefly
//! so that a stream of bad tokens does not become a stream of catalog reads.
//!
//! Bounded: at most `capacity` tenants, the least recently used forgotten first. Loads are
//! single-flight: however many requests find a tenant missing at once, one reads the
//! catalog and the others wait for it (a cold start with 1,000 tenants is 1,000 reads, not
//! one per request).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;
use sqlx::PgPool;
use tenancy_core::TenantId;
use tenancy_core::sealing::Sealer;

use crate::error::{RouterError, RouterResult};
use crate::metrics::Metrics;
use crate::tenant::{ServerRef, TenantEntry};

enum Cached {
    Found(Arc<TenantEntry>, Instant),
    Missing(Instant),
}

pub struct Directory {
    catalog: PgPool,
    sealer: Sealer,
    entries: Mutex<LruCache<TenantId, Cached>>,
    /// The load in flight per tenant: later requests for it wait on the first one's.
    loading: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>,
    /// Slugs named at sign-in and the tenant each named (none: no live tenant), for the
    /// TTL (the negative TTL for none); at most [`MAX_SLUGS`].
    slugs: Mutex<HashMap<String, (Option<TenantId>, Instant)>>,
    /// Bumped (under the write lock) by every invalidation: a catalog read that started
    /// before a change was announced must not fill the cache with what it read.
    generation: AtomicU64,
    ttl: Duration,
    negative_ttl: Duration,
    metrics: Arc<Metrics>,
    /// Test-only: a pause after each catalog read, to widen the race with a change.
    read_delay: Option<Duration>,
}

/// Catalog reads of one lookup while changes keep being announced meanwhile.
const FILL_ATTEMPTS: usize = 3;

/// Slugs remembered at most; beyond, the map starts again.
const MAX_SLUGS: usize = 10_000;

impl Directory {
    pub fn new(
        catalog: PgPool,
        sealer: Sealer,
        ttl: Duration,
        negative_ttl: Duration,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            catalog,
            sealer,
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            loading: Mutex::new(HashMap::new()),
            slugs: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ttl,
            negative_ttl,
            metrics,
            read_delay: None,
        }
    }

    /// Test-only fault injection: every catalog read takes `delay` longer.
    pub fn with_read_delay(mut self, delay: Option<Duration>) -> Self {
        self.read_delay = delay;
        self
    }

    /// The tenant with this id, from the cache or the catalog. `None`: no such tenant.
    pub async fn get(&self, id: TenantId) -> RouterResult<Option<Arc<TenantEntry>>> {
        if let Some(cached) = self.cached(id) {
            self.metrics.directory_lookup(if cached.is_some() {
                "hit"
            } else {
                "negative_hit"
            });
            return Ok(cached);
        }
        self.metrics.directory_lookup("miss");
        // One load per tenant at a time; whoever waited finds what the first one cached.
        let gate = self
            .loading
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let loaded = {
            let _turn = gate.lock().await;
            match self.cached(id) {
                Some(cached) => Ok(cached),
                None => self.load(id).await,
            }
        };
        {
            let mut loading = self.loading.lock();
            // The map's and this request's are the last references: nobody else waits.
            if Arc::strong_count(&gate) == 2 {
                loading.remove(&id);
            }
        }
        loaded
    }

    /// Reads the tenant from the catalog and caches it, unless a change was announced
    /// meanwhile (then reads again, a few times, and answers the last read uncached).
    async fn load(&self, id: TenantId) -> RouterResult<Option<Arc<TenantEntry>>> {
        let mut entry = None;
        for _ in 0..FILL_ATTEMPTS {
            let generation = self.generation.load(Ordering::SeqCst);
            self.metrics.directory_catalog_read();
            entry = match catalog::directory::lookup(&self.catalog, id).await? {
                Some(row) => Some(Arc::new(self.entry_from(row)?)),
                None => None,
            };
            if let Some(delay) = self.read_delay {
                tokio::time::sleep(delay).await;
            }
            let mut entries = self.entries.lock();
            // A change announced while reading may be newer than what was read: read again
            // rather than serve, or cache, what the catalog said before it.
            if self.generation.load(Ordering::SeqCst) == generation {
                let cached = match &entry {
                    Some(entry) => Cached::Found(entry.clone(), Instant::now()),
                    None => Cached::Missing(Instant::now()),
                };
                entries.put(id, cached);
                return Ok(entry);
            }
        }
        // Changes keep coming: answer from the latest read, without caching it.
        Ok(entry)
    }

    /// Tenants the directory holds now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cached(&self, id: TenantId) -> Option<Option<Arc<TenantEntry>>> {
        let mut entries = self.entries.lock();
        match entries.get(&id)? {
            Cached::Found(entry, at) if at.elapsed() < self.ttl => Some(Some(entry.clone())),
            Cached::Missing(at) if at.elapsed() < self.negative_ttl => Some(None),
            _ => None,
        }
    }

    fn entry_from(&self, row: catalog::directory::Entry) -> RouterResult<TenantEntry> {
        let status = row.status;
        let password = match &row.app_password {
            Some(sealed) => Some(
                self.sealer
                    .open_secret(&catalog::tenants::password_context(row.id), sealed)
                    .map_err(|error| {
                        RouterError::Internal(
                            anyhow::Error::new(error).context("open a tenant role password"),
                        )
                    })?,
            ),
            None => None,
        };
        let server = match (row.server_id, row.host, row.port) {
            (Some(id), Some(host), Some(port)) => Some(ServerRef {
                id,
                host,
                port: u16::try_from(port).unwrap_or_default(),
                connection_budget: u32::try_from(row.connection_budget.unwrap_or(1)).unwrap_or(1),
            }),
            _ => None,
        };
        Ok(TenantEntry {
            id: row.id,
            slug: row.slug,
            status,
            plan: row.plan,
            server,
            database: row.database_name,
            role: row.app_role,
            password,
            max_users: u32::try_from(row.max_users).unwrap_or(1),
            max_connections: u32::try_from(row.max_connections).unwrap_or(1),
            statement_timeout_ms: u32::try_from(row.statement_timeout_ms).unwrap_or(0),
            requests_per_minute: u32::try_from(row.requests_per_minute).unwrap_or(1),
            storage_exceeded: row.storage_exceeded,
            migrating: row.migrating,
        })
    }

    /// The live tenant a slug names (sign-in), from the cache or the catalog.
    pub async fn id_for_slug(&self, slug: &str) -> RouterResult<Option<TenantId>> {
        if let Some((id, at)) = self.slugs.lock().get(slug).copied() {
            let ttl = if id.is_some() {
                self.ttl
            } else {
                self.negative_ttl
            };
            if at.elapsed() < ttl {
                return Ok(id);
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let id = catalog::directory::id_for_slug(&self.catalog, slug).await?;
        let mut slugs = self.slugs.lock();
        // As for entries: a change announced meanwhile may make what was read stale.
        if self.generation.load(Ordering::SeqCst) == generation {
            if slugs.len() >= MAX_SLUGS {
                slugs.clear();
            }
            slugs.insert(slug.to_owned(), (id, Instant::now()));
        }
        Ok(id)
    }

    pub fn invalidate(&self, id: TenantId) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.pop(&id);
        // The tenant's slug may have changed hands, and a new tenant may now own a slug
        // remembered as free.
        self.slugs
            .lock()
            .retain(|_, (cached, _)| cached.is_some_and(|cached| cached != id));
    }

    /// Drops the entries of every tenant on a plan; returns their ids.
    pub fn invalidate_plan(&self, plan: &str) -> Vec<TenantId> {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        let ids: Vec<TenantId> = entries
            .iter()
            .filter_map(|(id, cached)| match cached {
                Cached::Found(entry, _) if entry.plan == plan => Some(*id),
                _ => None,
            })
            .collect();
        for id in &ids {
            entries.pop(id);
        }
        ids
    }

    pub fn clear(&self) {
        let mut entries = self.entries.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
        self.slugs.lock().clear();
    }
}
