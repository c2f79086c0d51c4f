//! Per-tenant token buckets for the plan's `requests_per_minute`: a bucket holds a minute's
//! worth of requests and refills continuously.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// Takes one request from the tenant's bucket, or says how long until one is free.
    pub fn take(&self, tenant: Uuid, per_minute: u32) -> Result<(), Duration> {
        let capacity = f64::from(per_minute.max(1));
        let per_second = capacity / 60.0;
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let bucket = buckets.entry(tenant).or_insert(Bucket {
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
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
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
}
