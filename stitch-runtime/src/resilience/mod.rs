//! Resilience policies of the call pipeline: retries with backoff and `Retry-After`, a per-stitch
//! retry budget, the circuit breaker (`circuit.rs`), and idempotency keys for retried writes.
//!
//! Invariants: a retry is only ever a new attempt of the same logical call (same idempotency key,
//! throttle acquired again); a caller's cancellation is never retried (the future is gone); waits
//! never outlive the call's total budget — a `Retry-After` that would is reported at once.

pub(crate) mod circuit;

use crate::error::{Error, TimeoutBound};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backoff {
    /// Always `base`.
    Fixed,
    /// `base * 2^(n-1)`, capped at `max`.
    Expo,
    /// Full jitter: a uniform random wait in `[0, min(max, base * 2^(n-1))]`.
    ExpoJitter,
}

/// A stitch's `retry(...)` declaration.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub(crate) attempts: u32,
    pub(crate) on: &'static [u16],
    pub(crate) backoff: Backoff,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) respect_retry_after: bool,
}

/// Statuses retried by default: rate limited and the gateway errors.
pub const DEFAULT_RETRY_ON: &[u16] = &[429, 502, 503, 504];

#[doc(hidden)]
impl RetryPolicy {
    pub const fn new(attempts: u32) -> Self {
        RetryPolicy {
            attempts,
            on: DEFAULT_RETRY_ON,
            backoff: Backoff::ExpoJitter,
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            respect_retry_after: true,
        }
    }
    pub const fn on(mut self, statuses: &'static [u16]) -> Self {
        self.on = statuses;
        self
    }
    pub const fn backoff(mut self, backoff: Backoff, base: Duration, max: Duration) -> Self {
        self.backoff = backoff;
        self.base = base;
        self.max = max;
        self
    }
    pub const fn ignore_retry_after(mut self) -> Self {
        self.respect_retry_after = false;
        self
    }
}

impl RetryPolicy {
    /// Total attempts, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether another attempt may fix this error: a listed status, a transport error or a
    /// per-attempt timeout. The total timeout, a throttle refusal, an open circuit and decode
    /// errors are final.
    pub(crate) fn retries(&self, error: &Error) -> bool {
        match error {
            Error::Status { status, .. } | Error::RateLimited { status, .. } => {
                self.on.contains(&status.as_u16())
            }
            Error::Transport { .. } => true,
            Error::Timeout { bound, .. } => *bound == TimeoutBound::Each,
            _ => false,
        }
    }

    /// The wait before attempt `next` (2 for the first retry).
    pub(crate) fn delay(&self, next: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(next.saturating_sub(2)).unwrap_or(u32::MAX))
            .min(self.max);
        match self.backoff {
            Backoff::Fixed => self.base.min(self.max),
            Backoff::Expo => exp,
            Backoff::ExpoJitter => exp.mul_f64(random_unit()),
        }
    }
}

/// A uniform random number in `[0, 1)`, for backoff jitter. Hand-written on purpose: three lines
/// over `getrandom` (already a dependency) against the `rand` crate and its generators for one
/// number per retry; jitter needs spread, not a seeded or fast generator.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A random UUID v4, for idempotency keys.
pub(crate) fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    // Without OS randomness, a nanosecond timestamp still tells logical calls apart (the `uuid`
    // crate's own `new_v4` would panic there, so it only sets the version bits and formats).
    if getrandom::fill(&mut b).is_err() {
        let n = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = n.to_le_bytes();
    }
    uuid::Builder::from_random_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// A stitch's `idempotency` declaration.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyPolicy {
    pub(crate) header: &'static str,
    pub(crate) from_argument: Option<&'static str>,
}

#[doc(hidden)]
impl IdempotencyPolicy {
    pub const fn new(header: &'static str) -> Self {
        IdempotencyPolicy {
            header,
            from_argument: None,
        }
    }
    pub const fn from_argument(mut self, name: &'static str) -> Self {
        self.from_argument = Some(name);
        self
    }
}

/// Caps the extra load retries add: each call deposits a fraction of a retry, each retry withdraws
/// one; a floor lets a quiet stitch still retry. The model is the retry budget of reqwest 0.13 and
/// Finagle: a failing upstream sees at most ~`RATIO` more requests than it would without retries.
#[derive(Default)]
pub(crate) struct RetryBudgets {
    /// Balances in thousandths of a retry (exact arithmetic).
    /// Keyed by the descriptor's identity (two stitches sharing a `name` keep their own budgets).
    balances: Mutex<HashMap<usize, u32>>,
}

/// Each call earns a fifth of a retry.
const RATIO: u32 = 200;
/// A quiet stitch may still retry this many times.
const FLOOR: u32 = 10_000;
const CEILING: u32 = 100_000;
const ONE: u32 = 1_000;

impl RetryBudgets {
    pub(crate) fn deposit(&self, endpoint: &crate::endpoint::Endpoint) {
        let mut b = self.balances.lock().unwrap_or_else(|e| e.into_inner());
        let balance = b.entry(endpoint.id()).or_insert(FLOOR);
        *balance = (*balance + RATIO).min(CEILING);
    }

    pub(crate) fn withdraw(&self, endpoint: &crate::endpoint::Endpoint) -> bool {
        let mut b = self.balances.lock().unwrap_or_else(|e| e.into_inner());
        let balance = b.entry(endpoint.id()).or_insert(FLOOR);
        if *balance >= ONE {
            *balance -= ONE;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_curves() {
        let ms = Duration::from_millis;
        let p = RetryPolicy::new(6).backoff(Backoff::Expo, ms(100), ms(500));
        let d: Vec<_> = (2..=6).map(|n| p.delay(n)).collect();
        assert_eq!(d, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        let p = RetryPolicy::new(6).backoff(Backoff::Fixed, ms(250), ms(10_000));
        assert!((2..=6).all(|n| p.delay(n) == ms(250)));
        let p = RetryPolicy::new(40).backoff(Backoff::ExpoJitter, ms(100), ms(1000));
        for n in 2..=40 {
            let cap = ms(100)
                .saturating_mul(1u32.checked_shl(n - 2).unwrap_or(u32::MAX))
                .min(ms(1000));
            assert!(p.delay(n) <= cap);
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.delay(5)).collect();
        assert!(spread.len() > 10, "full jitter spreads the waits");
    }

    #[test]
    fn uuids_are_v4() {
        let a = uuid_v4();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, uuid_v4());
    }

    #[test]
    fn the_budget_caps_retries() {
        static STITCH: crate::endpoint::Endpoint =
            crate::endpoint::Endpoint::get("s", "/s", &["/s"]);
        static OTHER: crate::endpoint::Endpoint =
            crate::endpoint::Endpoint::get("s", "/o", &["/o"]);
        let b = RetryBudgets::default();
        let granted = (0..100).filter(|_| b.withdraw(&STITCH)).count();
        assert_eq!(granted, 10, "the floor");
        for _ in 0..50 {
            b.deposit(&STITCH);
        }
        assert_eq!(
            (0..100).filter(|_| b.withdraw(&STITCH)).count(),
            10,
            "20% of 50 calls"
        );
        // A stitch sharing the name has its own budget (the floor, untouched by the above).
        assert_eq!((0..100).filter(|_| b.withdraw(&OTHER)).count(), 10);
    }
}
