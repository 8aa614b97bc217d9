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
    /// A stitch's own budget; the index tells its declarations apart (seam's first, then method's).
    Stitch(&'static str, u8),
    Host(String),
    Seam(&'static str),
    Named(&'static str),
}

struct Limiter {
    pacer: Option<Pacer>,
    permits: Option<(Arc<Semaphore>, u32)>,
}

impl Limiter {
    fn new(spec: &ThrottleSpec) -> Self {
        Limiter {
            pacer: spec.rate.map(|r| Pacer::new(r.interval(), spec.burst)),
            permits: spec
                .concurrency
                .map(|n| (Arc::new(Semaphore::new(n as usize)), n)),
        }
    }

    fn idle(&self, now: Instant) -> bool {
        self.pacer.as_ref().is_none_or(|p| p.idle(now))
            && self
                .permits
                .as_ref()
                .is_none_or(|(s, n)| s.available_permits() == *n as usize)
    }
}

/// Every limiter of one runtime. Public only for benchmarks (through `__private`).
#[doc(hidden)]
#[derive(Default)]
pub struct Limiters {
    map: RwLock<FastMap<PoolKey, Arc<Limiter>>>,
}

/// Held for the duration of one attempt: concurrency permits are released on drop.
#[doc(hidden)]
pub struct ThrottlePermit {
    _permits: [Option<OwnedSemaphorePermit>; 2],
    pub(crate) waited: Duration,
}

/// Hands back pacing reservations not yet reached when the caller is dropped while waiting.
struct PendingReservations([Option<(Arc<Limiter>, Reservation)>; 2]);

impl Drop for PendingReservations {
    fn drop(&mut self) {
        let now = Instant::now();
        for (limiter, r) in self.0.iter_mut().filter_map(Option::take) {
            if r.at > now {
                if let Some(p) = &limiter.pacer {
                    p.release_unused(r);
                }
            }
        }
    }
}

/// Above this many limiters, creating one first drops the idle ones.
const SWEEP_ABOVE: usize = 256;

/// A stitch declares at most two throttles: its seam's and its own.
const MAX_THROTTLES: usize = 2;

impl Limiters {
    fn key(endpoint: &'static Endpoint, level: usize, spec: &ThrottleSpec, host: &str) -> PoolKey {
        match spec.pool {
            Pool::Stitch => PoolKey::Stitch(endpoint.name, level as u8),
            Pool::Host => PoolKey::Host(host.to_owned()),
            Pool::Seam(name) => PoolKey::Seam(name),
            Pool::Named(name) => PoolKey::Named(name),
        }
    }

    fn create(&self, key: PoolKey, spec: &ThrottleSpec) -> Arc<Limiter> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = map.get(&key) {
            return l.clone();
        }
        if map.len() >= SWEEP_ABOVE {
            // Idle state is dropped so many hosts or keys do not grow memory without bound: a
            // limiter nobody holds, with no pending reservation and every permit back, loses nothing.
            let now = Instant::now();
            map.retain(|_, l| Arc::strong_count(l) > 1 || !l.idle(now));
        }
        map.entry(key)
            .or_insert_with(|| Arc::new(Limiter::new(spec)))
            .clone()
    }

    /// Limiters currently held (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
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
        let specs = &endpoint.throttles[..endpoint.throttles.len().min(MAX_THROTTLES)];
        let concurrent = specs.iter().any(|s| s.concurrency.is_some());
        let started = Instant::now();
        if !concurrent {
            // Pacing only: reserve under the read lock; no reference counts unless we must wait.
            match self.reserve(endpoint, specs, host, started, deadline)? {
                None => {
                    return Ok(ThrottlePermit {
                        _permits: [None, None],
                        waited: Duration::ZERO,
                    })
                }
                Some((mut pending, grant_at)) => {
                    tokio::time::sleep_until(grant_at).await;
                    // Reached: the reservations were used, nothing to hand back.
                    pending.0 = [None, None];
                    return Ok(ThrottlePermit {
                        _permits: [None, None],
                        waited: started.elapsed(),
                    });
                }
            }
        }
        let mut limiters: [Option<(Arc<Limiter>, &ThrottleSpec)>; 2] = [None, None];
        for (level, spec) in specs.iter().enumerate() {
            let key = Self::key(endpoint, level, spec, host);
            let existing = self
                .map
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            limiters[level] = Some((existing.unwrap_or_else(|| self.create(key, spec)), spec));
        }
        let mut permits: [Option<OwnedSemaphorePermit>; 2] = [None, None];
        for (slot, (limiter, spec)) in limiters
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.as_ref()?)))
        {
            let Some((semaphore, _)) = &limiter.permits else {
                continue;
            };
            let limit = bound(spec.max_wait, deadline, Instant::now());
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
            permits[slot] = permit.ok();
        }
        let now = Instant::now();
        let mut pending = PendingReservations([None, None]);
        let mut grant_at = now;
        for (slot, (limiter, spec)) in limiters
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((i, l.as_ref()?)))
        {
            let Some(pacer) = &limiter.pacer else {
                continue;
            };
            let limit = bound(spec.max_wait, deadline, now);
            match pacer.reserve(now, limit) {
                Ok(r) => {
                    grant_at = grant_at.max(r.at);
                    pending.0[slot] = Some((limiter.clone(), r));
                }
                Err(would_wait) => {
                    return Err(Error::Throttled {
                        stitch: endpoint.name,
                        would_wait: Some(would_wait),
                        limit: limit.unwrap_or_default(),
                    })
                }
            }
        }
        if grant_at > now {
            tokio::time::sleep_until(grant_at).await;
        }
        pending.0 = [None, None];
        Ok(ThrottlePermit {
            _permits: permits,
            waited: started.elapsed(),
        })
    }

    /// Pacing-only reservation. `Ok(None)`: granted now. `Ok(Some(..))`: granted later, with the
    /// reservations to hand back if the caller leaves before then.
    fn reserve(
        &self,
        endpoint: &'static Endpoint,
        specs: &[ThrottleSpec],
        host: &str,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<Option<(PendingReservations, Instant)>> {
        let mut made: [Option<(&Arc<Limiter>, Option<Reservation>)>; 2] = [None, None];
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let mut missing = false;
        for (level, spec) in specs.iter().enumerate() {
            let key = Self::key(endpoint, level, spec, host);
            match map.get(&key) {
                Some(l) => made[level] = Some((l, None)),
                None => missing = true,
            }
        }
        if missing {
            drop(map);
            for (level, spec) in specs.iter().enumerate() {
                self.create(Self::key(endpoint, level, spec, host), spec);
            }
            return self.reserve(endpoint, specs, host, now, deadline);
        }
        let mut grant_at = now;
        for level in 0..specs.len() {
            let spec = &specs[level];
            let Some((limiter, slot)) = &mut made[level] else {
                continue;
            };
            let Some(pacer) = &limiter.pacer else {
                continue;
            };
            let limit = bound(spec.max_wait, deadline, now);
            match pacer.reserve(now, limit) {
                Ok(r) => {
                    grant_at = grant_at.max(r.at);
                    *slot = Some(r);
                }
                Err(would_wait) => {
                    // Reserve nothing: hand back what this call already took.
                    for (l, r) in made[..level].iter().flatten() {
                        if let (Some(p), Some(r)) = (&l.pacer, r) {
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
        let mut pending = PendingReservations([None, None]);
        for (i, entry) in made.iter().enumerate() {
            if let Some((l, Some(r))) = entry {
                pending.0[i] = Some(((*l).clone(), *r));
            }
        }
        Ok(Some((pending, grant_at)))
    }
}

fn bound(max_wait: Option<Duration>, deadline: Option<Instant>, now: Instant) -> Option<Duration> {
    let remaining = deadline.map(|d| d.saturating_duration_since(now));
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
