//! Per-tenant token buckets for the plan's `requests_per_minute`: a bucket holds a minute's
//! worth of requests and refills continuously. A bucket that has refilled is the same as
//! none, so the map is pruned of those when it grows: it holds the tenants active in the
//! last minute, not every tenant ever seen. Pruning walks the map, so it runs at most once
//! a second: with more active tenants than [`PRUNE_AT`], requests do not each pay for a
//! walk.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use tenancy_core::TenantId;

/// Buckets held before the full ones are pruned.
const PRUNE_AT: usize = 10_000;

/// Least time between two prunings.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    map: HashMap<TenantId, Bucket>,
    pruned: Option<Instant>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// Takes one request from the tenant's bucket, or says how long until one is free.
    pub fn take(&self, tenant: TenantId, per_minute: u32) -> Result<(), Duration> {
        let capacity = f64::from(per_minute.max(1));
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock();
        let now = Instant::now();
        let due = buckets
            .pruned
            .is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY);
        if buckets.map.len() >= PRUNE_AT && due {
            // A bucket untouched for a minute is full again: forget it.
            buckets
                .map
                .retain(|_, bucket| now.duration_since(bucket.refilled) < Duration::from_secs(60));
            buckets.pruned = Some(now);
        }
        let bucket = buckets.map.entry(tenant).or_insert(Bucket {
            tokens: capacity,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_requests_then_refusal_and_tenants_are_apart() {
        let limiter = RateLimiter::default();
        let (first, second) = (TenantId::new(), TenantId::new());
        for _ in 0..60 {
            assert!(limiter.take(first, 60).is_ok());
        }
        let wait = limiter.take(first, 60).expect_err("the 61st request");
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(
            limiter.take(second, 60).is_ok(),
            "another tenant has its own bucket"
        );
    }

    #[test]
    fn the_bucket_map_keeps_only_recent_tenants() {
        let limiter = RateLimiter::default();
        for _ in 0..PRUNE_AT {
            assert!(limiter.take(TenantId::new(), 60).is_ok());
        }
        // Age every bucket past a minute, then one more tenant prunes them.
        for bucket in limiter.buckets.lock().map.values_mut() {
            bucket.refilled -= Duration::from_secs(61);
        }
        assert!(limiter.take(TenantId::new(), 60).is_ok());
        assert_eq!(limiter.buckets.lock().map.len(), 1);
        // Right after a pruning, more tenants do not walk the map again at once.
        for bucket in limiter.buckets.lock().map.values_mut() {
            bucket.refilled -= Duration::from_secs(61);
        }
        for _ in 0..PRUNE_AT {
            assert!(limiter.take(TenantId::new(), 60).is_ok());
        }
        assert_eq!(limiter.buckets.lock().map.len(), PRUNE_AT + 1);
        limiter.buckets.lock().pruned = Some(Instant::now() - PRUNE_EVERY);
        for bucket in limiter.buckets.lock().map.values_mut() {
            bucket.refilled -= Duration::from_secs(61);
        }
        assert!(limiter.take(TenantId::new(), 60).is_ok());
        assert_eq!(
            limiter.buckets.lock().map.len(),
            1,
            "a second later it does"
        );
    }
}
