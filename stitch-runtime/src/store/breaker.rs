//! The store breaker: one per runtime, shared by every concern that asks the store (the cache's
//! reads, writes and deletes, the fleet throttles, the fleet circuits), so an outage of the store
//! costs the runtime one store timeout, not one per call and per concern.
//!
//! After a failed store operation the store is not asked for [`PROBE_AFTER`]; each concern follows
//! its own outage policy meanwhile (a cache read is a miss, a write or delete is skipped, a
//! throttle follows `ThrottleOutage`, a circuit uses the in-process one), counted as degraded.
//! Then exactly one operation (the probe) asks it; its success closes the breaker for everyone,
//! its failure opens it for another [`PROBE_AFTER`]: recovery is automatic.
//!
//! Invariant: while the breaker is open, asking it is one atomic load; only one caller at a time
//! ever pays a store timeout once the store has failed. Time is `tokio::time` (paused in tests).

use super::{StoreError, StoreFuture};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// After a store failure, the store is not asked for this long; the first operation after it
/// probes the store again.
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(500);

/// Whether the store is asked, shared by every concern of one runtime.
pub(crate) struct StoreBreaker {
    /// 0 while the store is asked; otherwise until when (ms since `origin`, plus one) it is not.
    down_until: AtomicU64,
    origin: Instant,
    /// The runtime's store timeout: what one store operation may take.
    store_timeout: Duration,
}

impl StoreBreaker {
    pub(crate) fn new(store_timeout: Duration) -> Self {
        StoreBreaker {
            down_until: AtomicU64::new(0),
            origin: Instant::now(),
            store_timeout,
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// Whether this operation may ask the store. While the store is down, no; once
    /// [`PROBE_AFTER`] has passed, exactly one caller (the probe) may, and the others keep
    /// following their outage policy until its answer: concurrent callers must not all pay the
    /// store timeout again, nor each leave a reservation in a store that is frozen rather than
    /// dead (it would run them all on its return).
    pub(crate) fn may_ask(&self) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now < until {
            return false;
        }
        // The probe's own bound (one operation retried once) plus a margin: on a loaded machine
        // a timeout fires late, and a probe still waiting on its timer must not let a second
        // probe in. If the probe is dropped before it answers, another caller probes after that.
        let probing =
            now + 2 * self.store_timeout.as_millis() as u64 + PROBE_AFTER.as_millis() as u64;
        self.down_until
            .compare_exchange(until, probing, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the store is currently skipped (no probe claimed: for reporting state only).
    pub(crate) fn is_open(&self) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        until != 0 && self.now_ms() < until
    }

    /// The store answered: every concern asks it again (a load only, on the hot path).
    pub(crate) fn succeeded(&self) {
        if self.down_until.load(Ordering::Relaxed) != 0 {
            self.down_until.store(0, Ordering::Release);
        }
    }

    /// The store failed (or did not answer within its timeout): skip it for [`PROBE_AFTER`].
    pub(crate) fn failed(&self) {
        self.down_until.store(
            self.now_ms() + PROBE_AFTER.as_millis() as u64,
            Ordering::Release,
        );
    }

    /// One single-shot store operation (a cache read, write or delete) behind the breaker and
    /// bounded by `limit` (the store timeout, or less when the call's budget has less left).
    /// `None` when the breaker is open and the store was not asked. A timeout only opens the
    /// breaker when the operation had the whole store timeout: a call's short budget running out
    /// says nothing about the store's health.
    pub(crate) async fn run<'a, T>(
        &self,
        limit: Duration,
        operation: &'static str,
        op: impl FnOnce() -> StoreFuture<'a, T>,
    ) -> Option<Result<T, StoreError>> {
        if !self.may_ask() {
            return None;
        }
        Some(match tokio::time::timeout(limit, op()).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Ok(value)
            }
            Ok(Err(e)) => {
                self.failed();
                Err(e)
            }
            Err(_) => {
                if limit >= self.store_timeout {
                    self.failed();
                }
                Err(StoreError::timeout(operation, limit))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreErrorKind;

    fn answer(ok: bool) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(StoreError::unavailable("get", "refused"))
            }
        })
    }

    fn hang() -> StoreFuture<'static, ()> {
        Box::pin(std::future::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_skips_the_store_then_one_probe_asks_again() {
        let b = StoreBreaker::new(Duration::from_millis(250));
        let limit = Duration::from_millis(250);
        assert!(matches!(
            b.run(limit, "get", || answer(true)).await,
            Some(Ok(()))
        ));
        let failed = b.run(limit, "get", || answer(false)).await;
        assert_eq!(
            failed.unwrap().unwrap_err().kind(),
            StoreErrorKind::Unavailable
        );
        // Open: not asked, at no cost in time.
        let t = Instant::now();
        assert!(b.run(limit, "get", hang).await.is_none());
        assert_eq!(Instant::now(), t);
        assert!(b.is_open());
        tokio::time::sleep(PROBE_AFTER).await;
        // One probe, and nobody else while it is out.
        assert!(b.may_ask());
        assert!(!b.may_ask());
        b.succeeded();
        assert!(!b.is_open() && b.may_ask() && b.may_ask());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_opens_it_only_with_the_whole_store_timeout() {
        let b = StoreBreaker::new(Duration::from_millis(250));
        // The call's budget ran out first: the store is not blamed.
        let short = b.run(Duration::from_millis(10), "get", hang).await;
        assert_eq!(short.unwrap().unwrap_err().kind(), StoreErrorKind::Timeout);
        assert!(!b.is_open());
        let t = Instant::now();
        let full = b.run(Duration::from_millis(250), "get", hang).await;
        assert_eq!(full.unwrap().unwrap_err().kind(), StoreErrorKind::Timeout);
        assert_eq!(Instant::now() - t, Duration::from_millis(250));
        assert!(b.is_open());
        assert!(b
            .run(Duration::from_millis(250), "set", hang)
            .await
            .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_is_taken_over_after_its_bound() {
        let b = StoreBreaker::new(Duration::from_millis(100));
        b.failed();
        tokio::time::sleep(PROBE_AFTER).await;
        assert!(b.may_ask()); // the probe, then dropped without an answer
        assert!(!b.may_ask());
        // A probe whose timer fires late is still the only one.
        tokio::time::sleep(Duration::from_millis(201)).await;
        assert!(!b.may_ask());
        tokio::time::sleep(PROBE_AFTER).await;
        assert!(b.may_ask());
    }
}
