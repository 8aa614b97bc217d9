//! Metrics through the `metrics` facade, observed with `metrics-util`'s debugging recorder: calls
//! by stitch, outcome and cache result, call durations, attempts and retries, throttle waits,
//! circuit transitions, store errors and degraded decisions. Its own test binary: one test
//! installs the recorder process-wide, the other uses scoped (thread-local) recorders, which take
//! precedence on their thread.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stitch::store::{Store, StoreError, StoreFuture};
use stitch::Runtime;
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
#[allow(dead_code)]
struct Answer {
    n: usize,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/cached", cache = "1m")]
    async fn cached(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/plain")]
    async fn plain(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/missing")]
    async fn missing(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/paced", throttle = "10/s")]
    async fn paced(&self) -> stitch::Result<Answer>;

    #[stitch(
        get,
        path = "/flaky",
        retry(attempts = 3, backoff = "fixed", base = "10ms")
    )]
    async fn flaky(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/broken", circuit(failures = 2, cooldown = "1m"))]
    async fn broken(&self) -> stitch::Result<Answer>;
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Local {
    #[stitch(get, path = "/ping")]
    async fn ping(&self) -> stitch::Result<Answer>;
}

/// A store that is down: every operation fails.
struct Down;

impl Store for Down {
    fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<bytes::Bytes>> {
        Box::pin(async { Err(down("get")) })
    }
    fn set<'a>(&'a self, _: &'a str, _: bytes::Bytes, _: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(down("set")) })
    }
    fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(down("delete")) })
    }
}

fn down(operation: &'static str) -> StoreError {
    StoreError::unavailable(operation, "connection refused")
}

fn counter(metrics: &HashMap<String, DebugValue>, id: &str) -> u64 {
    match metrics.get(id) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!(
            "`{id}` is not a recorded counter: {other:?}\nrecorded: {:#?}",
            {
                let mut ids: Vec<_> = metrics.keys().collect();
                ids.sort();
                ids
            }
        ),
    }
}

fn samples(metrics: &HashMap<String, DebugValue>, id: &str) -> Vec<f64> {
    match metrics.get(id) {
        Some(DebugValue::Histogram(values)) => values.iter().map(|v| v.into_inner()).collect(),
        other => panic!("`{id}` is not a recorded histogram: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cache_attempts_throttle_circuit_and_store_are_measured() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let flaky = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |seen| match seen.path.as_str() {
        "/missing" => Reply::status(404, "no"),
        "/broken" => Reply::status(500, "down"),
        "/flaky" if flaky.fetch_add(1, Ordering::SeqCst) < 2 => Reply::status(503, "busy"),
        _ => Reply::json(json!({"n": 1})).after(Duration::from_millis(50)),
    })
    .await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();

    // Cache: a leader and a follower, then a hit; an uncached stitch bypasses.
    let (a, b) = tokio::join!(api.cached(), api.cached());
    a.unwrap();
    b.unwrap();
    api.cached().await.unwrap();
    api.plain().await.unwrap();
    api.missing().await.unwrap_err();
    // Throttle: of two concurrent calls, one waits ~100 ms for its grant.
    let (a, b) = tokio::join!(api.paced(), api.paced());
    a.unwrap();
    b.unwrap();
    // Two 503s, then success: three attempts, two retries.
    api.flaky().await.unwrap();
    // Two failures open the circuit; the third call fails fast.
    api.broken().await.unwrap_err();
    api.broken().await.unwrap_err();
    assert!(matches!(
        api.broken().await,
        Err(stitch::Error::CircuitOpen { .. })
    ));
    // A store that is down: the read becomes a miss, the write is skipped.
    let degraded = Runtime::builder()
        .base_url(up.url())
        .store(Down)
        .local_throttles() // a get/set/delete store: no fleet throttle verbs
        .build()
        .unwrap();
    ApiClient::new(&degraded).unwrap().cached().await.unwrap();
    // A refused connection is counted under its transport cause.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = Runtime::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    ApiClient::new(&refused).unwrap().plain().await.unwrap_err();
    // The store write runs behind the call: give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let m = stitch_tests::recorded::metrics(&snapshotter);
    let calls = |stitch: &str, outcome: &str, cache: &str| {
        counter(
            &m,
            &format!("stitch_calls_total{{cache={cache},outcome={outcome},stitch=metrics::Api::{stitch}}}"),
        )
    };
    assert_eq!(
        calls("cached", "ok", "miss"),
        2,
        "the leader, and the down store's"
    );
    assert_eq!(calls("cached", "ok", "coalesced"), 1);
    assert_eq!(calls("cached", "ok", "hit"), 1);
    assert_eq!(calls("plain", "ok", "bypass"), 1);
    assert_eq!(calls("missing", "404", "bypass"), 1);
    assert_eq!(calls("broken", "500", "bypass"), 2);
    assert_eq!(calls("broken", "circuit_open", "bypass"), 1);
    assert_eq!(calls("plain", "connection_refused", "bypass"), 1);
    assert_eq!(calls("flaky", "ok", "bypass"), 1);

    let plain = samples(
        &m,
        "stitch_call_duration_seconds{outcome=ok,stitch=metrics::Api::plain}",
    );
    assert_eq!(plain.len(), 1);
    assert!(plain[0] >= 0.05, "the upstream took 50 ms: {plain:?}");
    assert_eq!(
        samples(
            &m,
            "stitch_call_duration_seconds{outcome=404,stitch=metrics::Api::missing}"
        )
        .len(),
        1
    );

    assert_eq!(
        counter(&m, "stitch_attempts_total{stitch=metrics::Api::flaky}"),
        3
    );
    assert_eq!(
        counter(&m, "stitch_retries_total{stitch=metrics::Api::flaky}"),
        2
    );
    assert_eq!(
        counter(&m, "stitch_attempts_total{stitch=metrics::Api::broken}"),
        2
    );

    let mut waits = samples(
        &m,
        "stitch_throttle_wait_seconds{stitch=metrics::Api::paced}",
    );
    waits.sort_by(f64::total_cmp);
    assert_eq!(waits.len(), 2);
    assert!(
        waits[0] < 0.05 && waits[1] >= 0.08,
        "one grant was immediate, the other paced: {waits:?}"
    );

    assert_eq!(
        counter(
            &m,
            "stitch_circuit_transitions_total{stitch=metrics::Api::broken,to=open}"
        ),
        1
    );

    assert_eq!(
        counter(
            &m,
            "stitch_store_errors_total{operation=get,stitch=metrics::Api::cached}"
        ),
        1
    );
    // The failed read opened the store breaker: the write was skipped without asking the store
    // (no store error), and still counted as degraded below.
    assert!(!m.contains_key("stitch_store_errors_total{operation=set,stitch=metrics::Api::cached}"));
    assert_eq!(
        counter(
            &m,
            "stitch_degraded_total{decision=store_read_as_miss,stitch=metrics::Api::cached}"
        ),
        1
    );
    assert_eq!(
        counter(
            &m,
            "stitch_degraded_total{decision=store_write_skipped,stitch=metrics::Api::cached}"
        ),
        1
    );
}

/// Each scoped recorder receives the calls made under it, including one that replaces an earlier
/// recorder on the same thread (possibly at the same address): nothing registered with the first
/// one leaks into the second.
#[test]
fn every_scoped_recorder_sees_its_own_calls() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let up = rt.block_on(Upstream::start(|_| Reply::json(json!({"n": 1}))));
    let runtime = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = LocalClient::new(&runtime).unwrap();
    for round in 1..=3u64 {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..round {
                rt.block_on(api.ping()).unwrap();
            }
        });
        let m = stitch_tests::recorded::metrics(&snapshotter);
        assert_eq!(
            counter(
                &m,
                "stitch_calls_total{cache=bypass,outcome=ok,stitch=metrics::Local::ping}"
            ),
            round,
            "round {round}"
        );
        assert_eq!(
            counter(&m, "stitch_attempts_total{stitch=metrics::Local::ping}"),
            round
        );
    }
}
