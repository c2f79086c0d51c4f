//! A server's rate of connection opens: a token bucket.

use std::time::{Duration, Instant};

/// A token bucket for connection opens: `rate` per second, at most `rate` at once.
pub(super) struct OpenRate {
    rate: f64,
    bucket: parking_lot::Mutex<(f64, Instant)>,
}

impl OpenRate {
    pub(super) fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            bucket: parking_lot::Mutex::new((rate, Instant::now())),
        }
    }

    /// Waits for an open's turn, at most `wait`; false: none came in time.
    pub(super) async fn take(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let pause = {
                let mut bucket = self.bucket.lock();
                let now = Instant::now();
                let refill = now.duration_since(bucket.1).as_secs_f64() * self.rate;
                bucket.0 = (bucket.0 + refill).min(self.rate);
                bucket.1 = now;
                if bucket.0 >= 1.0 {
                    bucket.0 -= 1.0;
                    return true;
                }
                Duration::from_secs_f64((1.0 - bucket.0) / self.rate)
            };
            if Instant::now() + pause > deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_come_at_the_rate_after_a_seconds_worth() {
        let rate = OpenRate::new(20);
        for _ in 0..20 {
            assert!(rate.take(Duration::ZERO).await, "a second's worth at once");
        }
        assert!(
            !rate.take(Duration::from_millis(10)).await,
            "the next one is 50 ms away"
        );
        let started = Instant::now();
        assert!(rate.take(Duration::from_secs(1)).await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(25) && waited < Duration::from_millis(500),
            "{waited:?}"
        );
    }
}
