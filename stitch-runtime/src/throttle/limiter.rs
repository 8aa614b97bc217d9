//! The runtime's throttle state: one limiter (pacer and/or semaphore) per pool key, created on
//! first use and dropped when idle, and the per-attempt acquisition of every throttle a stitch
//! declares.

use super::gcra::{Pacer, Reservation};
use super::{Pool, ThrottleSpec};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::fasthash::FastMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Which budget a declaration draws from.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum PoolKey {
    /// A stitch's own budget, by descriptor identity (two stitches sharing a `name` never share
    /// it); the index tells its declarations apart (seam's first, then method's).
    Stitch(usize, u8),
    Host(String),
    Seam(&'static str),
    Named(&'static str),
}

struct Limiter {
    pacer: Option<Pacer>,
    permits: Option<(Arc<Semaphore>, u32)>,
}

impl Limiter {
    /// The limiter of `spec` at `share` of its rate and concurrency (1.0: as declared; less when it
    /// stands in for a fleet budget during a store outage).
    fn new(spec: &ThrottleSpec, share: f64) -> Self {
        let (interval, concurrency) = if share >= 1.0 {
            (spec.rate.map(|r| r.interval()), spec.concurrency)
        } else {
            (
                spec.rate
                    .map(|r| Duration::from_secs_f64(r.interval().as_secs_f64() / share)),
                // At least one slot: a share must slow calls down, never stop them.
                spec.concurrency
                    .map(|n| ((f64::from(n) * share).floor() as u32).max(1)),
            )
        };
        Limiter {
            pacer: interval.map(|i| Pacer::new(i, spec.burst)),
            permits: concurrency.map(|n| (Arc::new(Semaphore::new(n as usize)), n)),
        }
    }

    fn idle(&self, now: u64) -> bool {
        self.pacer.as_ref().is_none_or(|p| p.idle(now))
            && self
                .permits
                .as_ref()
                .is_none_or(|(s, n)| s.available_permits() == *n as usize)
    }
}

/// The clock pacing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PacingClock {
    /// The CPU's time-stamp counter through `quanta` (a few nanoseconds a read; falls back to the
    /// OS clock where the TSC is unreliable). The default.
    #[default]
    Tsc,
    /// tokio's clock: pacing follows `tokio::time::pause`/`advance`, for tests under paused time.
    Tokio,
}

/// Nanoseconds since the limiters were created, on the chosen clock.
struct Clock {
    kind: PacingClock,
    tsc: quanta::Clock,
    tsc_origin: u64,
    tokio_origin: Instant,
}

impl Clock {
    fn new(kind: PacingClock) -> Self {
        // Calibrating the TSC takes milliseconds: once per process, not once per runtime.
        static TSC: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
        let tsc = TSC.get_or_init(quanta::Clock::new).clone();
        let tsc_origin = tsc.raw();
        Clock {
            kind,
            tsc,
            tsc_origin,
            tokio_origin: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        match self.kind {
            PacingClock::Tsc => self.tsc.delta_as_nanos(self.tsc_origin, self.tsc.raw()),
            PacingClock::Tokio => self.tokio_origin.elapsed().as_nanos() as u64,
        }
    }

    /// Sleeps until `at` on this clock (`now` read just before).
    async fn sleep_until(&self, at: u64, now: u64) {
        match self.kind {
            PacingClock::Tokio => {
                tokio::time::sleep_until(self.tokio_origin + Duration::from_nanos(at)).await
            }
            PacingClock::Tsc => {
                tokio::time::sleep(Duration::from_nanos(at.saturating_sub(now))).await
            }
        }
    }
}

/// The limiters a stitch's throttles resolve to (seam's first, then its own).
type Resolved = [Option<Arc<Limiter>>; MAX_THROTTLES];

/// Every limiter of one runtime. Public only for benchmarks (through `__private`).
#[doc(hidden)]
pub struct Limiters {
    /// Tells this runtime's entries in the per-thread cache from another's.
    id: u64,
    map: RwLock<FastMap<PoolKey, Arc<Limiter>>>,
    /// Per descriptor (by address), the limiters of stitches whose pools do not depend on the
    /// host: the hot path finds them with one probe instead of one per pool.
    by_endpoint: RwLock<FastMap<usize, Resolved>>,
    clock: Clock,
    /// The share of each declared rate and concurrency these limiters enforce (1.0 but for the
    /// stand-in of a fleet budget whose store is unreachable).
    share: f64,
    /// Which declarations these limiters enforce (next to fleet budgets, only some of them).
    scope: Scope,
}

/// Which of a stitch's throttle declarations a set of [`Limiters`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every declaration (no store, or `RuntimeBuilder::local_throttles`).
    All,
    /// Only those declared `local`: the in-process part of a runtime with fleet budgets.
    Local,
    /// Only the fleet ones: the stand-in for fleet budgets while their store is unreachable.
    Fleet,
}

impl Scope {
    fn covers(self, spec: &ThrottleSpec) -> bool {
        match self {
            Scope::All => true,
            Scope::Local => spec.local,
            Scope::Fleet => !spec.local,
        }
    }
}

impl Default for Limiters {
    /// Limiters on tokio's clock (what unit tests under paused time need).
    fn default() -> Self {
        Self::new(PacingClock::Tokio)
    }
}

/// Held for the duration of one attempt: concurrency permits are released on drop.
#[doc(hidden)]
pub struct ThrottlePermit {
    pub(super) _permits: [Option<OwnedSemaphorePermit>; MAX_THROTTLES],
    pub(crate) waited: Duration,
    /// Fleet leases (store-backed concurrency), released on drop; `None` for in-process limiters
    /// (boxed: the local permit stays small and allocation-free).
    pub(crate) _fleet: Option<Box<super::fleet::Held>>,
}

/// What [`Limiters::try_acquire`] got.
#[doc(hidden)]
pub enum Acquired<'a> {
    /// Granted now.
    Now(ThrottlePermit),
    /// Reserved, granted at a later time: await [`Later::wait`]. (Boxed: the common `Now` stays
    /// small.)
    Later(Box<Later<'a>>),
    /// A concurrency cap is involved: use [`Limiters::acquire`].
    Contended,
}

/// Pacing reservations granted later.
#[doc(hidden)]
pub struct Later<'a> {
    clock: &'a Clock,
    pending: PendingReservations<'a>,
    grant_at: u64,
    now: u64,
}

impl Later<'_> {
    /// Waits for the grant; dropping this future hands the reservations back.
    pub async fn wait(self: Box<Self>) -> ThrottlePermit {
        let mut this = *self;
        this.wait_here().await
    }

    async fn wait_here(&mut self) -> ThrottlePermit {
        self.clock.sleep_until(self.grant_at, self.now).await;
        // Reached: the reservations were used, nothing to hand back.
        self.pending.held = [None, None];
        ThrottlePermit {
            _permits: [None, None],
            waited: Duration::from_nanos(self.grant_at - self.now),
            _fleet: None,
        }
    }
}

/// Hands back pacing reservations not yet reached when the caller is dropped while waiting.
struct PendingReservations<'a> {
    clock: &'a Clock,
    held: [Option<(Arc<Limiter>, Reservation)>; MAX_THROTTLES],
}

impl Drop for PendingReservations<'_> {
    fn drop(&mut self) {
        let now = self.clock.now();
        for (limiter, r) in self.held.iter_mut().filter_map(Option::take) {
            if r.at > now {
                if let Some(p) = &limiter.pacer {
                    p.release_unused(r);
                }
            }
        }
    }
}

thread_local! {
    /// The descriptors this thread acquired for most recently, with their limiters (by runtime id
    /// and descriptor address): the hottest path takes no lock at all. Only host-independent pools
    /// enter it, and those are never dropped as idle, so the references it keeps change nothing.
    static RECENT: std::cell::RefCell<Vec<(u64, usize, Resolved)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Entries of [`RECENT`] per thread.
const RECENT_ENTRIES: usize = 4;

/// Above this many limiters, creating one first drops the idle ones.
const SWEEP_ABOVE: usize = 256;

/// A stitch declares at most two throttles: its seam's and its own.
const MAX_THROTTLES: usize = 2;

impl Limiters {
    /// Limiters pacing on `clock`.
    pub fn new(clock: PacingClock) -> Self {
        Self::scoped(clock, 1.0, Scope::All)
    }

    /// Limiters enforcing `share` (in `(0, 1]`) of the declared rate and concurrency of the
    /// declarations in `scope` (the others are left to fleet budgets, or to other limiters):
    /// a share below 1 is the in-process stand-in for fleet budgets while their store is
    /// unreachable.
    pub(crate) fn scoped(clock: PacingClock, share: f64, scope: Scope) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Limiters {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            map: RwLock::default(),
            by_endpoint: RwLock::default(),
            clock: Clock::new(clock),
            share,
            scope,
        }
    }

    /// Whether `endpoint` declares a throttle these limiters enforce.
    pub(crate) fn covers(&self, endpoint: &Endpoint) -> bool {
        endpoint.throttles.iter().any(|s| self.scope.covers(s))
    }

    fn key(endpoint: &'static Endpoint, level: usize, spec: &ThrottleSpec, host: &str) -> PoolKey {
        match spec.pool {
            Pool::Stitch => PoolKey::Stitch(endpoint.id(), level as u8),
            Pool::Host => PoolKey::Host(host.to_owned()),
            Pool::Seam(name) => PoolKey::Seam(name),
            Pool::Named(name) => PoolKey::Named(name),
        }
    }

    fn limiter(&self, key: PoolKey, spec: &ThrottleSpec) -> Arc<Limiter> {
        if let Some(l) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return l.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = map.get(&key) {
            return l.clone();
        }
        if map.len() >= SWEEP_ABOVE {
            // Idle state is dropped so many hosts or keys do not grow memory without bound: a
            // limiter nobody holds, with no pending reservation and every permit back, loses nothing.
            let now = self.clock.now();
            map.retain(|_, l| Arc::strong_count(l) > 1 || !l.idle(now));
        }
        map.entry(key)
            .or_insert_with(|| Arc::new(Limiter::new(spec, self.share)))
            .clone()
    }

    /// Limiters currently held (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The limiters of `endpoint`'s throttles; remembered per descriptor when no pool depends on
    /// the host.
    fn resolve(&self, endpoint: &'static Endpoint, specs: &[ThrottleSpec], host: &str) -> Resolved {
        let mut resolved: Resolved = [None, None];
        for (level, spec) in specs.iter().enumerate() {
            // Out of scope: enforced elsewhere (a fleet budget), so no limiter and no wait here.
            if self.scope.covers(spec) {
                resolved[level] = Some(self.limiter(Self::key(endpoint, level, spec, host), spec));
            }
        }
        if specs.iter().all(|s| s.pool != Pool::Host) {
            self.by_endpoint
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(endpoint.id(), resolved.clone());
        }
        resolved
    }

    /// The uncontended path, without a future: every pacing throttle is reserved at once.
    /// `Now` when all grant immediately, `Later` when the caller must wait for its grant (already
    /// reserved, handed back if dropped), `Contended` when a concurrency cap is involved (use
    /// [`Limiters::acquire`]).
    pub fn try_acquire(
        &self,
        endpoint: &'static Endpoint,
        host: &str,
        deadline: Option<Instant>,
    ) -> Result<Acquired<'_>> {
        let specs = &endpoint.throttles[..endpoint.throttles.len().min(MAX_THROTTLES)];
        if specs
            .iter()
            .any(|s| s.concurrency.is_some() && self.scope.covers(s))
        {
            return Ok(Acquired::Contended);
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let now = self.clock.now();
        let key = endpoint.id();
        let recent = RECENT.with(|recent| {
            let recent = recent.borrow();
            recent
                .iter()
                .find(|(id, at, _)| *id == self.id && *at == key)
                .map(|(_, _, resolved)| self.reserve(endpoint, specs, resolved, now, remaining))
        });
        let outcome = match recent {
            Some(outcome) => outcome?,
            None => {
                let table = self.by_endpoint.read().unwrap_or_else(|e| e.into_inner());
                let known = table.get(&key).cloned();
                drop(table);
                let resolved = known.unwrap_or_else(|| self.resolve(endpoint, specs, host));
                if specs.iter().all(|s| s.pool != Pool::Host) {
                    RECENT.with(|recent| {
                        let mut recent = recent.borrow_mut();
                        if recent.len() >= RECENT_ENTRIES {
                            recent.remove(0);
                        }
                        recent.push((self.id, key, resolved.clone()));
                    });
                }
                self.reserve(endpoint, specs, &resolved, now, remaining)?
            }
        };
        Ok(match outcome {
            None => Acquired::Now(ThrottlePermit {
                _permits: [None, None],
                waited: Duration::ZERO,
                _fleet: None,
            }),
            Some((pending, grant_at)) => Acquired::Later(Box::new(Later {
                clock: &self.clock,
                pending: *pending,
                grant_at,
                now,
            })),
        })
    }

    /// Acquires every throttle of `endpoint` for one attempt: permits first, then pacing.
    ///
    /// Waiting is bounded by each throttle's `max_wait` and by `deadline` (the call's remaining
    /// budget); a pacing wait that would exceed either fails at once with [`Error::Throttled`]
    /// saying how long it would have been, and reserves nothing.
    pub async fn acquire(
        &self,
        endpoint: &'static Endpoint,
        host: &str,
        deadline: Option<Instant>,
    ) -> Result<ThrottlePermit> {
        match self.try_acquire(endpoint, host, deadline)? {
            Acquired::Now(permit) => return Ok(permit),
            Acquired::Later(later) => return Ok(later.wait().await),
            Acquired::Contended => {}
        }
        let specs = &endpoint.throttles[..endpoint.throttles.len().min(MAX_THROTTLES)];
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let started = self.clock.now();
        let resolved = self.resolve(endpoint, specs, host);
        let mut permits: [Option<OwnedSemaphorePermit>; MAX_THROTTLES] = [None, None];
        for (level, spec) in specs.iter().enumerate() {
            let Some(limiter) = &resolved[level] else {
                continue;
            };
            let Some((semaphore, _)) = &limiter.permits else {
                continue;
            };
            let limit = bound(
                spec.max_wait,
                remaining
                    .map(|r| r.saturating_sub(Duration::from_nanos(self.clock.now() - started))),
            );
            let acquire = semaphore.clone().acquire_owned();
            let permit =
                match limit {
                    None => acquire.await,
                    Some(limit) => tokio::time::timeout(limit, acquire).await.map_err(|_| {
                        Error::Throttled {
                            stitch: endpoint.name,
                            would_wait: None,
                            limit,
                        }
                    })?,
                };
            // The semaphore is never closed.
            permits[level] = permit.ok();
        }
        let now = self.clock.now();
        let left = remaining.map(|r| r.saturating_sub(Duration::from_nanos(now - started)));
        if let Some((mut pending, grant_at)) =
            self.reserve(endpoint, specs, &resolved, now, left)?
        {
            self.clock.sleep_until(grant_at, now).await;
            pending.held = [None, None];
        }
        Ok(ThrottlePermit {
            _permits: permits,
            waited: Duration::from_nanos(self.clock.now() - started),
            _fleet: None,
        })
    }

    /// Reserves every pacing throttle. `Ok(None)`: granted now. `Ok(Some(..))`: granted later,
    /// with the reservations to hand back if the caller leaves before then. On refusal nothing
    /// stays reserved.
    fn reserve(
        &self,
        endpoint: &'static Endpoint,
        specs: &[ThrottleSpec],
        resolved: &Resolved,
        now: u64,
        remaining: Option<Duration>,
    ) -> Result<Option<(Box<PendingReservations<'_>>, u64)>> {
        let mut made: [Option<Reservation>; MAX_THROTTLES] = [None, None];
        let mut grant_at = now;
        for (level, spec) in specs.iter().enumerate() {
            let Some(pacer) = resolved[level].as_ref().and_then(|l| l.pacer.as_ref()) else {
                continue;
            };
            let limit = bound(spec.max_wait, remaining);
            match pacer.reserve(now, limit) {
                Ok(r) => {
                    grant_at = grant_at.max(r.at);
                    made[level] = Some(r);
                }
                Err(would_wait) => {
                    // Reserve nothing: hand back what this call already took.
                    for (l, r) in resolved.iter().zip(made.iter()) {
                        if let (Some(p), Some(r)) = (l.as_ref().and_then(|l| l.pacer.as_ref()), r) {
                            p.release_unused(*r);
                        }
                    }
                    return Err(Error::Throttled {
                        stitch: endpoint.name,
                        would_wait: Some(would_wait),
                        limit: limit.unwrap_or_default(),
                    });
                }
            }
        }
        if grant_at == now {
            return Ok(None);
        }
        let mut pending = Box::new(PendingReservations {
            clock: &self.clock,
            held: [None, None],
        });
        for (level, r) in made.iter().enumerate() {
            if let (Some(l), Some(r)) = (&resolved[level], r) {
                pending.held[level] = Some((l.clone(), *r));
            }
        }
        Ok(Some((pending, grant_at)))
    }
}

pub(crate) fn bound(max_wait: Option<Duration>, remaining: Option<Duration>) -> Option<Duration> {
    match (max_wait, remaining) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Endpoint, Method};
    use crate::throttle::{Pool, ThrottleSpec};
    use std::sync::Mutex as StdMutex;

    const fn endpoint(name: &'static str, throttles: &'static [ThrottleSpec]) -> Endpoint {
        Endpoint::new(name, Method::Get, "/", &[]).throttles(throttles)
    }

    /// Grant offsets (ms from the start) of `n` callers arriving together.
    async fn timeline(limiters: &Arc<Limiters>, ep: &'static Endpoint, n: usize) -> Vec<u128> {
        let t0 = Instant::now();
        let grants = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (l, g) = (limiters.clone(), grants.clone());
            tasks.push(tokio::spawn(async move {
                let _p = l.acquire(ep, "h:1", None).await.unwrap();
                g.lock().unwrap().push((Instant::now() - t0).as_millis());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut g = grants.lock().unwrap().clone();
        g.sort();
        g
    }

    fn spaced(n: usize, ms: u128) -> Vec<u128> {
        (0..n as u128).map(|i| i * ms).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn grant_timelines_are_evenly_spaced() {
        static TWO_PER_S: Endpoint = endpoint(
            "a",
            &[ThrottleSpec::new(Pool::Stitch).rate(2, Duration::from_secs(1))],
        );
        static PER_MIN: Endpoint = endpoint(
            "b",
            &[ThrottleSpec::new(Pool::Stitch).rate(120, Duration::from_secs(60))],
        );
        static HALF_S: Endpoint = endpoint(
            "c",
            &[ThrottleSpec::new(Pool::Stitch).rate(1, Duration::from_millis(500))],
        );
        static FIFTEEN: Endpoint = endpoint(
            "d",
            &[ThrottleSpec::new(Pool::Stitch).rate(100, Duration::from_secs(900))],
        );
        let l = Arc::new(Limiters::default());
        assert_eq!(timeline(&l, &TWO_PER_S, 6).await, spaced(6, 500));
        assert_eq!(timeline(&l, &PER_MIN, 5).await, spaced(5, 500));
        assert_eq!(timeline(&l, &HALF_S, 5).await, spaced(5, 500));
        assert_eq!(timeline(&l, &FIFTEEN, 4).await, spaced(4, 9000));
    }

    #[tokio::test(start_paused = true)]
    async fn no_burst_across_a_window_edge() {
        // A fixed window would admit 2 at 0.9 s and 2 more at 1.0 s; pacing never does.
        static EP: Endpoint = endpoint(
            "edge",
            &[ThrottleSpec::new(Pool::Stitch).rate(2, Duration::from_secs(1))],
        );
        let l = Arc::new(Limiters::default());
        tokio::time::sleep(Duration::from_millis(900)).await;
        let g = timeline(&l, &EP, 4).await;
        assert_eq!(g, spaced(4, 500));
        for w in g.windows(2) {
            assert!(w[1] - w[0] >= 500);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_tolerance_then_spacing() {
        static EP: Endpoint = endpoint(
            "burst",
            &[ThrottleSpec::new(Pool::Stitch)
                .rate(1, Duration::from_secs(1))
                .burst(2)],
        );
        let l = Arc::new(Limiters::default());
        assert_eq!(timeline(&l, &EP, 5).await, vec![0, 0, 0, 1000, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn grants_are_fifo() {
        static EP: Endpoint = endpoint(
            "fifo",
            &[ThrottleSpec::new(Pool::Stitch)
                .rate(10, Duration::from_secs(1))
                .concurrency(1)],
        );
        let l = Arc::new(Limiters::default());
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (l, o) = (l.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = l.acquire(&EP, "h:1", None).await.unwrap();
                o.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn host_pools_are_shared_across_stitches() {
        static A: Endpoint = endpoint(
            "ha",
            &[ThrottleSpec::new(Pool::Host).rate(1, Duration::from_secs(1))],
        );
        static B: Endpoint = endpoint(
            "hb",
            &[ThrottleSpec::new(Pool::Host).rate(1, Duration::from_secs(1))],
        );
        let l = Limiters::default();
        let t0 = Instant::now();
        l.acquire(&A, "api:443", None).await.unwrap();
        l.acquire(&B, "api:443", None).await.unwrap();
        assert_eq!(
            (Instant::now() - t0).as_millis(),
            1000,
            "B waited for A's budget"
        );
        l.acquire(&B, "other:443", None).await.unwrap();
        assert_eq!(
            (Instant::now() - t0).as_millis(),
            1000,
            "another host has its own budget"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn seam_and_method_throttles_stack() {
        const SEAM: ThrottleSpec =
            ThrottleSpec::new(Pool::Seam("s")).rate(2, Duration::from_secs(1));
        static SLOW: Endpoint = endpoint(
            "slow",
            &[
                SEAM,
                ThrottleSpec::new(Pool::Stitch).rate(1, Duration::from_secs(1)),
            ],
        );
        static FAST: Endpoint = endpoint("fast", &[SEAM]);
        let l = Arc::new(Limiters::default());
        assert_eq!(
            timeline(&l, &SLOW, 3).await,
            spaced(3, 1000),
            "the method's tighter rate"
        );
        // The seam's budget was spent by SLOW's grants too: FAST continues the seam's spacing.
        let t = Instant::now();
        let (a, b) = tokio::join!(l.acquire(&FAST, "h:1", None), l.acquire(&FAST, "h:1", None));
        a.unwrap();
        b.unwrap();
        assert_eq!((Instant::now() - t).as_millis(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn max_wait_fails_fast_with_the_would_be_wait() {
        static EP: Endpoint = endpoint(
            "mw",
            &[ThrottleSpec::new(Pool::Stitch)
                .rate(1, Duration::from_secs(1))
                .max_wait(Duration::from_millis(1500))],
        );
        let l = Arc::new(Limiters::default());
        l.acquire(&EP, "h:1", None).await.unwrap();
        // One caller waits for the grant at 1 s: within max_wait.
        let queued = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(&EP, "h:1", None).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        // The next grant is at 2 s: beyond max_wait, refused at once, nothing reserved.
        let t = Instant::now();
        match l.acquire(&EP, "h:1", None).await {
            Err(Error::Throttled {
                would_wait, limit, ..
            }) => {
                assert_eq!(would_wait, Some(Duration::from_secs(2)));
                assert_eq!(limit, Duration::from_millis(1500));
            }
            other => panic!("expected Throttled, got {:?}", other.map(|_| ())),
        }
        assert_eq!(Instant::now(), t, "failed without waiting");
        // The call's remaining budget bounds the wait too.
        match l
            .acquire(
                &EP,
                "h:1",
                Some(Instant::now() + Duration::from_millis(500)),
            )
            .await
        {
            Err(Error::Throttled { limit, .. }) => assert_eq!(limit, Duration::from_millis(500)),
            other => panic!("expected Throttled, got {:?}", other.map(|_| ())),
        }
        queued.await.unwrap().unwrap();
        assert_eq!(
            (Instant::now() - t).as_millis(),
            1000,
            "the refused callers reserved nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_dropped_while_waiting_gives_its_reservation_back() {
        static EP: Endpoint = endpoint(
            "drop",
            &[ThrottleSpec::new(Pool::Stitch).rate(1, Duration::from_secs(1))],
        );
        let l = Arc::new(Limiters::default());
        let t0 = Instant::now();
        l.acquire(&EP, "h:1", None).await.unwrap();
        let waiting = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(&EP, "h:1", None).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting.abort();
        let _ = waiting.await;
        l.acquire(&EP, "h:1", None).await.unwrap();
        assert_eq!(
            (Instant::now() - t0).as_millis(),
            1000,
            "the slot at 1 s was reused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_permits_are_released_on_drop_and_capped() {
        static EP: Endpoint = endpoint("cc", &[ThrottleSpec::new(Pool::Stitch).concurrency(2)]);
        let l = Limiters::default();
        let a = l.acquire(&EP, "h:1", None).await.unwrap();
        let _b = l.acquire(&EP, "h:1", None).await.unwrap();
        let third = l
            .acquire(&EP, "h:1", Some(Instant::now() + Duration::from_millis(50)))
            .await;
        assert!(matches!(
            third,
            Err(Error::Throttled {
                would_wait: None,
                ..
            })
        ));
        drop(a);
        l.acquire(&EP, "h:1", Some(Instant::now() + Duration::from_millis(50)))
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_pools_are_dropped() {
        static EP: Endpoint = endpoint(
            "many",
            &[ThrottleSpec::new(Pool::Host).rate(100, Duration::from_secs(1))],
        );
        let l = Limiters::default();
        for i in 0..5_000 {
            l.acquire(&EP, &format!("host-{i}:80"), None).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(l.len() <= SWEEP_ABOVE + 1, "{} pools held", l.len());
    }
}
