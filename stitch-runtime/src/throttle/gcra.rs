//! A lock-free GCRA pacer with reservations.
//!
//! State is one atomic: the theoretical arrival time (TAT) in nanoseconds since the pacer's origin.
//! A caller arriving at `now` is granted at `max(now, TAT - tolerance)` and moves TAT to
//! `max(TAT, grant) + interval`; so grants are spaced exactly `interval` apart once the `burst`
//! tolerance is used, and a window edge never admits extra requests (unlike a fixed window).
//!
//! A caller dropped before its grant time hands its slot back when it was the latest reservation
//! (TAT unchanged since), which is the only case that cannot disturb later reservations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Times are nanoseconds on the limiters' pacing clock (see `limiter::PacingClock`).
pub(crate) struct Pacer {
    tat: AtomicU64,
    interval: u64,
    tolerance: u64,
}

/// A reservation: when the caller may send, and how to give it back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    pub(crate) at: u64,
    /// TAT after this reservation (for handing it back).
    tat_after: u64,
}

impl Pacer {
    pub(crate) fn new(interval: Duration, burst: u32) -> Self {
        let interval = interval.as_nanos().max(1) as u64;
        Pacer {
            tat: AtomicU64::new(0),
            interval,
            tolerance: interval.saturating_mul(burst as u64),
        }
    }

    /// Reserves the next grant, unless it lies further than `limit` in the future; then returns how
    /// long the wait would have been and reserves nothing.
    pub(crate) fn reserve(
        &self,
        now: u64,
        limit: Option<Duration>,
    ) -> Result<Reservation, Duration> {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let grant = now.max(tat.saturating_sub(self.tolerance));
            let wait = Duration::from_nanos(grant - now);
            if limit.is_some_and(|l| wait > l) {
                return Err(wait);
            }
            let next = tat.max(grant) + self.interval;
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        at: grant,
                        tat_after: next,
                    })
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives an unused reservation back, if nothing was reserved after it.
    pub(crate) fn release_unused(&self, r: Reservation) {
        let _ = self.tat.compare_exchange(
            r.tat_after,
            r.tat_after - self.interval,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// No reservation is pending at `now` (the state can be dropped without losing anything).
    pub(crate) fn idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Acquire) <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn grants_are_evenly_spaced_without_burst() {
        let p = Pacer::new(Duration::from_millis(500), 0);
        let t0 = 7 * MS;
        let grants: Vec<_> = (0..4)
            .map(|_| p.reserve(t0, None).unwrap().at - t0)
            .collect();
        assert_eq!(grants, [0, 500 * MS, 1000 * MS, 1500 * MS]);
    }

    #[test]
    fn burst_tolerance_then_spacing_and_handing_back() {
        let p = Pacer::new(Duration::from_millis(100), 2);
        let t0 = 0;
        let g: Vec<_> = (0..5).map(|_| p.reserve(t0, None).unwrap()).collect();
        let at: Vec<_> = g.iter().map(|r| r.at / MS).collect();
        assert_eq!(at, [0, 0, 0, 100, 200]);
        assert_eq!(
            p.reserve(t0, Some(Duration::from_millis(250))).unwrap_err(),
            Duration::from_millis(300)
        );
        p.release_unused(g[4]);
        assert_eq!(
            p.reserve(t0, None).unwrap().at / MS,
            200,
            "the slot was handed back"
        );
        p.release_unused(g[3]);
        assert_eq!(
            p.reserve(t0, None).unwrap().at / MS,
            300,
            "not the latest: kept"
        );
    }
}
