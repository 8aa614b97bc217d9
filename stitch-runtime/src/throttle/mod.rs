//! Throttling: even pacing (GCRA) and concurrency caps, per stitch, host, seam or named pool.
//!
//! A throttle is acquired once per attempt, after the cache and coalescing (hits and coalesced
//! followers never spend budget), in a fixed order: every concurrency permit first (seam, then
//! method), then every pacing reservation, so the upstream sees sends spaced by the pacing even when
//! callers queued for a permit. Permits are released when the response has been read or the
//! attempt failed, timed out or was dropped.
//!
//! Time is read from the CPU's time-stamp counter (quanta) by default, or from tokio's clock when
//! the runtime is built with `PacingClock::Tokio` (tests under paused time). The uncontended grant
//! is synchronous: no future, no lock (a per-thread cache of the stitch's limiters), one clock read
//! and one compare-and-swap per declared rate.
//!
//! Where the state lives is chosen when the runtime is built ([`Throttles`]): in-process limiters
//! (`limiter`, the default, and with `RuntimeBuilder::local_throttles`), or, when a store is
//! attached, fleet budgets on the store (`fleet`: GCRA reservations on the store's clock and
//! renewed leases), shared by every runtime attached to it; a declaration written
//! `throttle(..., local)` keeps its budget in-process even then. The pipeline asks the seam the
//! same way in both cases; the store's outage policy is [`ThrottleOutage`].
//!
//! Why our own pacer rather than governor: we need reservations that can be handed back on
//! cancellation, waits bounded by `max_wait` and the call's remaining budget with the would-be wait
//! reported, FIFO grants, and the same algorithm as the fleet-wide store version.

pub(crate) mod fleet;
pub(crate) mod gcra;
#[doc(hidden)]
pub mod limiter;

pub use fleet::{ThrottleOutage, DEFAULT_LEASE_TTL};
pub use limiter::PacingClock;

use crate::endpoint::Endpoint;
use limiter::{Acquired, Limiters, ThrottlePermit};
use std::time::Duration;
use tokio::time::Instant;

/// `host:port` of a URL: the key of `pool = "host"` throttles.
pub(crate) fn host_key(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// The throttle state of one runtime, chosen when the runtime is built: in-process limiters, or
/// budgets shared by every runtime attached to the same store ([`fleet`]). The call pipeline asks
/// this seam and never knows which one it has.
#[doc(hidden)]
pub enum Throttles {
    /// Process-local: no store, or `RuntimeBuilder::local_throttles`.
    Local(Limiters),
    /// Fleet-wide, on the attached store.
    Fleet(fleet::Fleet),
}

impl Throttles {
    /// The uncontended path without a future (see [`Limiters::try_acquire`]); fleet budgets always
    /// answer `Contended`, since they need a store round trip (a stitch whose throttles are all
    /// written `local` takes the in-process path).
    #[inline]
    pub fn try_acquire(
        &self,
        endpoint: &'static Endpoint,
        host: &str,
        deadline: Option<Instant>,
    ) -> crate::Result<Acquired<'_>> {
        match self {
            Throttles::Local(l) => l.try_acquire(endpoint, host, deadline),
            Throttles::Fleet(f) => match f.only_local(endpoint) {
                Some(l) => l.try_acquire(endpoint, host, deadline),
                None => Ok(Acquired::Contended),
            },
        }
    }

    /// Acquires every throttle of `endpoint` for one attempt (see [`Limiters::acquire`]).
    pub async fn acquire(
        &self,
        endpoint: &'static Endpoint,
        host: &str,
        deadline: Option<Instant>,
    ) -> crate::Result<ThrottlePermit> {
        match self {
            Throttles::Local(l) => l.acquire(endpoint, host, deadline).await,
            Throttles::Fleet(f) => f.acquire(endpoint, host, deadline).await,
        }
    }

    /// Stops renewing and releases every fleet lease this runtime holds (see
    /// [`fleet::Fleet::shutdown`]); nothing to do for in-process limiters.
    pub(crate) async fn shutdown(&self) {
        if let Throttles::Fleet(f) = self {
            f.shutdown().await;
        }
    }

    /// Pools (local) or budgets (fleet) currently held in memory.
    pub(crate) fn len(&self) -> usize {
        match self {
            Throttles::Local(l) => l.len(),
            Throttles::Fleet(f) => f.len(),
        }
    }
}

/// A pacing rate: `count` grants per `window`, spaced evenly (`window / count` apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub(crate) count: u64,
    pub(crate) window: Duration,
}

impl Rate {
    #[doc(hidden)]
    pub const fn new(count: u64, window: Duration) -> Self {
        Rate { count, window }
    }

    /// The spacing between grants.
    pub fn interval(&self) -> Duration {
        self.window / self.count.max(1) as u32
    }

    /// Grants per second.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.window.as_secs_f64()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}ms", self.count, self.window.as_millis())
    }
}

/// Who shares a throttle's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pool {
    /// This stitch alone (the default for a method's throttle).
    Stitch,
    /// Every stitch of the runtime calling the same host (and port).
    Host,
    /// Every method of the seam (the default for a seam's throttle).
    Seam(&'static str),
    /// Everything naming this pool.
    Named(&'static str),
}

/// One throttle declaration, as parsed at compile time.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSpec {
    pub(crate) rate: Option<Rate>,
    pub(crate) burst: u32,
    pub(crate) concurrency: Option<u32>,
    pub(crate) pool: Pool,
    pub(crate) max_wait: Option<Duration>,
    /// `throttle(..., local)`: this budget stays in-process even with a store attached.
    pub(crate) local: bool,
}

#[doc(hidden)]
impl ThrottleSpec {
    pub const fn new(pool: Pool) -> Self {
        ThrottleSpec {
            rate: None,
            burst: 0,
            concurrency: None,
            pool,
            max_wait: None,
            local: false,
        }
    }
    pub const fn rate(mut self, count: u64, window: Duration) -> Self {
        self.rate = Some(Rate { count, window });
        self
    }
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }
    pub const fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }
    pub const fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = Some(d);
        self
    }
    pub const fn local(mut self) -> Self {
        self.local = true;
        self
    }
}

impl ThrottleSpec {
    /// The pacing rate, if any.
    pub fn pacing(&self) -> Option<Rate> {
        self.rate
    }
    /// The concurrency cap, if any.
    pub fn max_concurrency(&self) -> Option<u32> {
        self.concurrency
    }
    /// Who shares the budget.
    pub fn pool(&self) -> Pool {
        self.pool
    }
    /// Whether the declaration opted out of the fleet (`throttle(..., local)`): its budget is
    /// enforced by this process alone even when the runtime has a store attached.
    pub fn is_local(&self) -> bool {
        self.local
    }
}
