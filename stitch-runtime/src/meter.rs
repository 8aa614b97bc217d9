//! Metrics through the [`metrics`] facade: whichever recorder the application installs
//! (Prometheus, OpenTelemetry, StatsD exporters, `metrics-util`'s test recorders) receives them.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `stitch_calls_total` | counter | `stitch`, `outcome` (`ok` or the error type, as in the span's `error.type`), `cache` (`hit`, `miss`, `coalesced`, `bypass`) | finished calls |
//! | `stitch_call_duration_seconds` | histogram | `stitch`, `outcome` | calls not served from the cache |
//! | `stitch_attempts_total` | counter | `stitch` | attempts started (a retry is one more) |
//! | `stitch_retries_total` | counter | `stitch` | retries decided after a failed attempt |
//! | `stitch_throttle_wait_seconds` | histogram | `stitch` | each attempt's wait for its throttle grant |
//! | `stitch_circuit_transitions_total` | counter | `stitch`, `to` (`open`, `closed`) | circuit state changes |
//! | `stitch_store_errors_total` | counter | `stitch`, `operation` | failed or timed-out store operations |
//! | `stitch_degraded_total` | counter | `stitch`, `decision` | a failure absorbed instead of failing the call (`store_read_as_miss`, `store_write_skipped`, `store_delete_skipped`, `circuit_read_admitted`, `circuit_not_shared`, `retry_budget_exhausted`) |
//!
//! Invariant: the per-call metrics of a successful call allocate nothing and build no metric
//! key. Their handles are registered once per thread, stitch, recorder and series, then reused
//! (a registration builds a `Key` with a heap-allocated label list and hashes it: about as much
//! work as a cache hit's whole key derivation). With no recorder installed the handles are the
//! facade's no-op handles, so a call pays a thread-local lookup and a branch per metric. Error and
//! degraded paths register on the spot: they are rare and their labels vary.

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::fasthash::FastMap;
use metrics::{counter, histogram, Counter, Histogram};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// How a call was served, as the `cache` label (and the span's `cache` field) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheOutcome {
    Hit,
    Miss,
    Coalesced,
    Bypass,
}

impl CacheOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Coalesced => "coalesced",
            CacheOutcome::Bypass => "bypass",
        }
    }
}

const CACHE_OUTCOMES: [CacheOutcome; 4] = [
    CacheOutcome::Hit,
    CacheOutcome::Miss,
    CacheOutcome::Coalesced,
    CacheOutcome::Bypass,
];

/// The hot handles of one stitch with one recorder, each registered on first use (so a stitch
/// shows only the series it produces: no empty throttle histogram for an unthrottled stitch).
struct Handles {
    stitch: &'static str,
    /// `stitch_calls_total{outcome="ok"}`, by [`CacheOutcome`] in `CACHE_OUTCOMES` order.
    ok: [OnceCell<Counter>; 4],
    ok_duration: OnceCell<Histogram>,
    attempts: OnceCell<Counter>,
    throttle_wait: OnceCell<Histogram>,
}

impl Handles {
    fn new(endpoint: &'static Endpoint) -> Self {
        Handles {
            stitch: endpoint.name,
            ok: Default::default(),
            ok_duration: OnceCell::new(),
            attempts: OnceCell::new(),
            throttle_wait: OnceCell::new(),
        }
    }
    fn ok(&self, cache: CacheOutcome) -> &Counter {
        let stitch = self.stitch;
        self.ok[cache as usize].get_or_init(|| {
            counter!("stitch_calls_total", "stitch" => stitch, "outcome" => "ok", "cache" => CACHE_OUTCOMES[cache as usize].as_str())
        })
    }
    fn ok_duration(&self) -> &Histogram {
        let stitch = self.stitch;
        self.ok_duration.get_or_init(
            || histogram!("stitch_call_duration_seconds", "stitch" => stitch, "outcome" => "ok"),
        )
    }
    fn attempts(&self) -> &Counter {
        let stitch = self.stitch;
        self.attempts
            .get_or_init(|| counter!("stitch_attempts_total", "stitch" => stitch))
    }
    fn throttle_wait(&self) -> &Histogram {
        let stitch = self.stitch;
        self.throttle_wait
            .get_or_init(|| histogram!("stitch_throttle_wait_seconds", "stitch" => stitch))
    }
}

/// This thread's handles, valid for the recorder whose address they were registered with.
#[derive(Default)]
struct Registered {
    recorder: usize,
    by_endpoint: FastMap<usize, Rc<Handles>>,
}

thread_local! {
    static REGISTERED: RefCell<Registered> = RefCell::default();
}

/// Runs `f` with the stitch's handles for the current recorder (the global one, or a local one
/// set with `metrics::with_local_recorder`): a recorder at another address drops the handles
/// registered with the previous one.
fn with_handles(endpoint: &'static Endpoint, f: impl FnOnce(&Handles)) {
    let recorder = metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize);
    let handles = REGISTERED.with(|registered| {
        let mut registered = registered.borrow_mut();
        if registered.recorder != recorder {
            registered.recorder = recorder;
            registered.by_endpoint.clear();
        }
        registered
            .by_endpoint
            .entry(std::ptr::from_ref(endpoint) as usize)
            .or_insert_with(|| Rc::new(Handles::new(endpoint)))
            .clone()
    });
    f(&handles);
}

/// A finished call: `stitch_calls_total`, and for calls that were not cache hits
/// `stitch_call_duration_seconds` (`elapsed`).
pub(crate) fn call<T>(
    endpoint: &'static Endpoint,
    cache: CacheOutcome,
    outcome: &Result<T, Error>,
    elapsed: Option<Duration>,
) {
    match outcome {
        Ok(_) => with_handles(endpoint, |h| {
            h.ok(cache).increment(1);
            if let Some(elapsed) = elapsed {
                h.ok_duration().record(elapsed.as_secs_f64());
            }
        }),
        Err(error) => {
            let kind = error.error_type();
            counter!("stitch_calls_total", "stitch" => endpoint.name, "outcome" => kind.clone(), "cache" => cache.as_str())
                .increment(1);
            if let Some(elapsed) = elapsed {
                histogram!("stitch_call_duration_seconds", "stitch" => endpoint.name, "outcome" => kind)
                    .record(elapsed.as_secs_f64());
            }
        }
    }
}

/// A call served from the cache (in-process or store): counted, not timed (a hit's duration is
/// the cache's, and reading the clock would be a tenth of the hit's cost).
pub(crate) fn hit(endpoint: &'static Endpoint) {
    with_handles(endpoint, |h| {
        h.ok(CacheOutcome::Hit).increment(1);
    });
}

/// One attempt starts.
pub(crate) fn attempt(endpoint: &'static Endpoint) {
    with_handles(endpoint, |h| h.attempts().increment(1));
}

/// A retry was decided.
pub(crate) fn retry(endpoint: &'static Endpoint) {
    counter!("stitch_retries_total", "stitch" => endpoint.name).increment(1);
}

/// An attempt got its throttle grant after `waited`.
pub(crate) fn throttle_wait(endpoint: &'static Endpoint, waited: Duration) {
    with_handles(endpoint, |h| h.throttle_wait().record(waited.as_secs_f64()));
}

/// The circuit opened or closed.
pub(crate) fn circuit(endpoint: &'static Endpoint, to: &'static str) {
    counter!("stitch_circuit_transitions_total", "stitch" => endpoint.name, "to" => to)
        .increment(1);
}

/// A store operation failed (or timed out) and the call went on without it: `decision` says how.
pub(crate) fn store_error(
    endpoint: &'static Endpoint,
    operation: &'static str,
    decision: &'static str,
) {
    counter!("stitch_store_errors_total", "stitch" => endpoint.name, "operation" => operation)
        .increment(1);
    degraded(endpoint, decision);
}

/// A failure was absorbed instead of failing the call.
pub(crate) fn degraded(endpoint: &'static Endpoint, decision: &'static str) {
    counter!("stitch_degraded_total", "stitch" => endpoint.name, "decision" => decision)
        .increment(1);
}
