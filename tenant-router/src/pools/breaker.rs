//! A server's circuit breaker. Its state sits behind a lock that cannot be poisoned: a
//! panic elsewhere never leaves it reading "closed" by accident.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Consecutive connection failures that open a server's breaker.
const BREAKER_THRESHOLD: u32 = 3;

/// A server's circuit breaker: after repeated connection failures requests fail fast until
/// a health check (or a trial connection after the cool-down) succeeds.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .open_until
            .is_some_and(|until| until > Instant::now())
    }

    pub fn failure(&self) {
        let mut state = self.state.lock();
        state.failures += 1;
        if state.failures >= BREAKER_THRESHOLD {
            state.open_until = Some(Instant::now() + Duration::from_secs(5));
        }
    }

    pub fn success(&self) {
        let mut state = self.state.lock();
        state.failures = 0;
        state.open_until = None;
    }

    /// A health check saw the server answer: let requests try again (one more failure
    /// opens the breaker again).
    pub(super) fn heal(&self) {
        let mut state = self.state.lock();
        state.failures = BREAKER_THRESHOLD - 1;
        state.open_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_open_it_a_success_closes_it_and_a_heal_gives_one_more_try() {
        let breaker = Breaker::default();
        breaker.failure();
        breaker.failure();
        assert!(!breaker.is_open(), "two failures are not enough");
        breaker.failure();
        assert!(breaker.is_open());
        breaker.heal();
        assert!(!breaker.is_open(), "a health check lets requests try again");
        breaker.failure();
        assert!(
            breaker.is_open(),
            "one more failure after a heal opens it again"
        );
        breaker.success();
        breaker.failure();
        assert!(!breaker.is_open(), "a success starts the count again");
    }
}
