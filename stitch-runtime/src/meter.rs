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
//! | `stitch_degraded_total` | counter | `stitch`, `decision` | a failure absorbed instead of failing the call (`store_read_as_miss`, `store_write_skipped`, `store_delete_skipped`, `fleet_cache_local`, `invalidation_local`, `circuit_local`, `circuit_not_shared`, `retry_budget_exhausted`) |
//! | `stitch_fleet_cache_events_total` | counter | `event` (`gap`: events lost, the in-process tier flushed; `fenced`: a fill refused because its lease was lost or its entry invalidated) | fleet cache coherence |
//! | `stitch_fleet_store_errors_total` | counter | `operation` | failed fleet cache writes behind the call (`fill_complete`, `bump`) |
//!
//! Invariant: the per-call metrics of a successful call allocate nothing and build no metric
//! key. Each stitch's keys are built once per process (interned, `'static`) and found through a
//! per-thread map; each emission then asks the current recorder for the key's handle, as the
//! facade's own macros do, so a recorder installed late or set per scope
//! (`metrics::with_local_recorder`) always gets its own handles. With no recorder installed an
//! emission is that map probe plus the facade's no-op handle. Error and degraded paths use the
//! macros directly: they are rare and their labels vary.
//!
//! Measured (callgrind, `benches/examples/probe.rs`, of ~92 K instructions per uncached call):
//! ~0.2 K per call without a recorder, ~1.6 K with a registry-backed recorder (the exporter's
//! lookup of each handle). Handles are not cached across calls: a cache keyed by the recorder's
//! address handed a scoped recorder the handles of an earlier one at the same stack address.

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::fasthash::FastMap;
use metrics::{counter, histogram, Key, Label, Level, Metadata};
use std::cell::RefCell;
use std::sync::Mutex;
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

/// The keys of one stitch's per-call series (the only metrics of a successful call's path):
/// built and leaked once per stitch, so an emission builds no key.
struct Keys {
    /// `stitch_calls_total{outcome="ok", cache=...}`, by [`CacheOutcome`] in declaration order.
    ok: [Key; 4],
    /// `stitch_call_duration_seconds{outcome="ok"}`.
    ok_duration: Key,
    /// `stitch_attempts_total`.
    attempts: Key,
    /// `stitch_throttle_wait_seconds`.
    throttle_wait: Key,
}

impl Keys {
    fn new(stitch: &'static str) -> Self {
        let label = || Label::new("stitch", stitch);
        let ok = |cache: CacheOutcome| {
            Key::from_parts(
                "stitch_calls_total",
                vec![
                    label(),
                    Label::new("outcome", "ok"),
                    Label::new("cache", cache.as_str()),
                ],
            )
        };
        Keys {
            ok: [
                ok(CacheOutcome::Hit),
                ok(CacheOutcome::Miss),
                ok(CacheOutcome::Coalesced),
                ok(CacheOutcome::Bypass),
            ],
            ok_duration: Key::from_parts(
                "stitch_call_duration_seconds",
                vec![label(), Label::new("outcome", "ok")],
            ),
            attempts: Key::from_parts("stitch_attempts_total", vec![label()]),
            throttle_wait: Key::from_parts("stitch_throttle_wait_seconds", vec![label()]),
        }
    }
}

/// Every stitch's keys, by descriptor address (descriptors are statics), each leaked once:
/// bounded by the program's stitches.
static INTERNED: Mutex<Option<FastMap<usize, &'static Keys>>> = Mutex::new(None);

/// This thread's view of [`INTERNED`], so the hot path takes no lock, with the last stitch
/// looked up in front (calls of one stitch tend to follow each other).
#[derive(Default)]
struct Seen {
    last: Option<(usize, &'static Keys)>,
    all: FastMap<usize, &'static Keys>,
}

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::default();
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The keys of a stitch's per-call series.
fn keys(endpoint: &'static Endpoint) -> &'static Keys {
    let id = std::ptr::from_ref(endpoint) as usize;
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some((last, keys)) = seen.last {
            if last == id {
                return keys;
            }
        }
        let keys = *seen.all.entry(id).or_insert_with(|| {
            *INTERNED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(FastMap::default)
                .entry(id)
                .or_insert_with(|| Box::leak(Box::new(Keys::new(endpoint.name))))
        });
        seen.last = Some((id, keys));
        keys
    })
}

/// Asks the current recorder (scoped, else global, else the no-op one) for the counter of `key`
/// and increments it, as `metrics::counter!` does, minus building the key.
fn increment(key: &'static Key) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
}

fn record(key: &'static Key, value: Duration) {
    metrics::with_recorder(|recorder| {
        recorder
            .register_histogram(key, &METADATA)
            .record(value.as_secs_f64());
    });
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
        Ok(_) => {
            let keys = keys(endpoint);
            increment(&keys.ok[cache as usize]);
            if let Some(elapsed) = elapsed {
                record(&keys.ok_duration, elapsed);
            }
        }
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
    increment(&keys(endpoint).ok[CacheOutcome::Hit as usize]);
}

/// One attempt starts.
pub(crate) fn attempt(endpoint: &'static Endpoint) {
    increment(&keys(endpoint).attempts);
}

/// A retry was decided.
pub(crate) fn retry(endpoint: &'static Endpoint) {
    counter!("stitch_retries_total", "stitch" => endpoint.name).increment(1);
}

/// An attempt got its throttle grant after `waited`.
pub(crate) fn throttle_wait(endpoint: &'static Endpoint, waited: Duration) {
    record(&keys(endpoint).throttle_wait, waited);
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

/// Fleet cache events were lost: the in-process tier was flushed.
pub(crate) fn fleet_gap() {
    counter!("stitch_fleet_cache_events_total", "event" => "gap").increment(1);
}

/// A fleet fill was refused by its fence (lease lost, or entry invalidated during the fetch).
pub(crate) fn fleet_fill_fenced() {
    counter!("stitch_fleet_cache_events_total", "event" => "fenced").increment(1);
}

/// A fleet cache write behind the call failed.
pub(crate) fn fleet_store_error(operation: &'static str) {
    counter!("stitch_fleet_store_errors_total", "operation" => operation).increment(1);
}
