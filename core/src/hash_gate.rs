//! A bound on the argon2 work in flight. One argon2id check holds about 19 MiB for tens of
//! milliseconds of a core: a burst of logins, unbounded, becomes gigabytes and a queue
//! nobody gets out of. The gate lets `concurrency` checks run at once and `max_waiting`
//! wait (each at most `max_wait`); anyone beyond that is refused at once ([`Busy`]: answer
//! 503 with `Retry-After`). It also remembers how long a check takes, so that a login that
//! needs no check (an unknown or locked account) can take as long without doing one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once; try again shortly")]
pub struct Busy;

#[derive(Debug)]
pub struct HashGate {
    permits: Arc<Semaphore>,
    /// Holding or waiting for a permit.
    in_line: AtomicUsize,
    limit: usize,
    max_wait: Duration,
    /// A recent check's duration, in microseconds.
    typical_micros: AtomicU64,
}

/// The right to run one check; the place in line is given back on drop.
#[derive(Debug)]
pub struct HashPermit<'a> {
    gate: &'a HashGate,
    _permit: OwnedSemaphorePermit,
}

impl HashGate {
    pub fn new(concurrency: usize, max_waiting: usize, max_wait: Duration) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            in_line: AtomicUsize::new(0),
            limit: concurrency + max_waiting,
            max_wait,
            typical_micros: AtomicU64::new(50_000),
        }
    }

    /// A gate sized for this machine: one check per core, 64 waiting, 5 s at most.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, 64, Duration::from_secs(5))
    }

    /// A permit to run one check, or [`Busy`] when the line is full or the wait too long.
    pub async fn enter(&self) -> Result<HashPermit<'_>, Busy> {
        if self.in_line.fetch_add(1, Ordering::SeqCst) >= self.limit {
            self.in_line.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(HashPermit {
                gate: self,
                _permit: permit,
            }),
            _ => {
                self.in_line.fetch_sub(1, Ordering::SeqCst);
                Err(Busy)
            }
        }
    }

    /// How long a check takes these days.
    pub fn typical(&self) -> Duration {
        Duration::from_micros(self.typical_micros.load(Ordering::Relaxed))
    }

    /// Waits as long as a check would take, without doing one.
    pub async fn pretend(&self) {
        tokio::time::sleep(self.typical()).await;
    }
}

impl HashPermit<'_> {
    /// Runs the check on the blocking pool and notes how long it took.
    pub async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(work).await;
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let previous = self.gate.typical_micros.load(Ordering::Relaxed);
        // A moving average: one slow check does not make every pretend slow.
        self.gate
            .typical_micros
            .store((previous * 7 + took) / 8, Ordering::Relaxed);
        result
    }
}

impl Drop for HashPermit<'_> {
    fn drop(&mut self) {
        self.gate.in_line.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_running_and_the_waiting_everyone_is_refused_at_once() {
        let gate = Arc::new(HashGate::new(1, 1, Duration::from_secs(5)));
        let running = gate.enter().await.expect("the first runs");
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        assert_eq!(gate.enter().await.map(drop), Err(Busy), "the line is full");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "refused at once"
        );
        drop(running);
        assert_eq!(
            waiter.await.expect("join"),
            Ok(()),
            "the waiter got its turn"
        );
        assert!(gate.enter().await.is_ok(), "the line is free again");
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_the_longest_wait() {
        let gate = HashGate::new(1, 4, Duration::from_millis(100));
        let _running = gate.enter().await.expect("the first runs");
        let started = Instant::now();
        assert_eq!(gate.enter().await.map(drop), Err(Busy));
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
