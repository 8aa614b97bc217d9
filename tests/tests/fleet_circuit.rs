//! Fleet-wide circuits and `key_prefix`: runtimes attached to one store share one circuit (failure
//! count, open state, the single half-open trial) and, under one `key_prefix`, one throttle budget
//! and one cache; under different prefixes nothing. In one process on a `MemoryStore`, and across
//! separate OS processes (this test binary re-executed as workers) on a real `redis-server`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch::store::{
    CircuitReply, CircuitStep, MemoryStore, Store, StoreError, StoreErrorKind, StoreFuture, Verbs,
};
use stitch::{Client, Error, Runtime};
use stitch_tests::fleet::Redis;
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Fleet {
    #[stitch(get, path = "/breaker", circuit(failures = 3, cooldown = "400ms"))]
    async fn breaker(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/slow-breaker", circuit(failures = 3, cooldown = "2s"))]
    async fn slow_breaker(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/paced", throttle(rate = "1/s", max_wait = "50ms"))]
    async fn paced(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/cached", cache = "1m")]
    async fn cached(&self) -> stitch::Result<String>;
}

const KEY: [u8; 32] = [9; 32];

fn runtime(base: &str, store: impl stitch::store::Store, prefix: Option<&str>) -> Runtime {
    let mut b = Runtime::builder()
        .base_url(base)
        .store(store)
        .principal_key(KEY);
    if let Some(p) = prefix {
        b = b.key_prefix(p);
    }
    b.build().unwrap()
}

/// An upstream failing with 503 until `healthy` is set, then answering after 1.5 s.
async fn flaky() -> (Upstream, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let up = Upstream::start(move |_| {
        if h.load(Ordering::SeqCst) {
            Reply::json(serde_json::json!("ok")).after(Duration::from_millis(1500))
        } else {
            Reply::status(503, "down")
        }
    })
    .await;
    (up, healthy)
}

fn is_status(r: &stitch::Result<String>) -> bool {
    matches!(r, Err(Error::Status { .. }))
}

fn is_open(r: &stitch::Result<String>) -> bool {
    matches!(r, Err(Error::CircuitOpen { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_counts_opens_trials_and_closes_across_runtimes_on_one_store() {
    let (up, healthy) = flaky().await;
    let store = MemoryStore::default();
    let a = FleetClient::new(&runtime(&up.url(), store.clone(), None)).unwrap();
    let b = FleetClient::new(&runtime(&up.url(), store.clone(), None)).unwrap();
    // Two failures in one runtime and one in the other: three in the fleet, the circuit opens.
    assert!(is_status(&a.breaker().await));
    assert!(is_status(&a.breaker().await));
    assert!(is_status(&b.breaker().await));
    assert_eq!(up.hits(), 3);
    assert!(
        is_open(&a.breaker().await),
        "open in the runtime that saw 2"
    );
    assert!(
        is_open(&b.breaker().await),
        "open in the runtime that saw 1"
    );
    assert_eq!(up.hits(), 3, "an open circuit sends nothing");
    assert_eq!(a.runtime().circuit_state(FleetClient::BREAKER), "open");

    // After the cooldown: exactly one trial in the whole fleet, the others fail fast.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { c.breaker().await })
        })
        .collect();
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.unwrap());
    }
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let open = results.iter().filter(|r| is_open(r)).count();
    assert_eq!((ok, open), (1, 7), "one trial fleet-wide: {results:?}");
    assert_eq!(up.hits(), 4);

    // Its success closed the circuit for every runtime.
    assert!(b.breaker().await.is_ok());
    assert!(a.breaker().await.is_ok());
    assert_eq!(up.hits(), 6);
    assert_eq!(b.runtime().circuit_state(FleetClient::BREAKER), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_dropped_by_its_caller_is_handed_to_the_next_caller() {
    let (up, healthy) = flaky().await;
    let store = MemoryStore::default();
    let a = FleetClient::new(&runtime(&up.url(), store.clone(), None)).unwrap();
    let b = FleetClient::new(&runtime(&up.url(), store.clone(), None)).unwrap();
    for _ in 0..3 {
        assert!(is_status(&a.breaker().await));
    }
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(450)).await;
    // The trial is cancelled while the upstream is still answering.
    let trial = tokio::spawn({
        let a = a.clone();
        async move { a.breaker().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(is_open(&b.breaker().await), "the trial is running");
    trial.abort();
    let _ = trial.await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        b.breaker().await.is_ok(),
        "the other runtime takes the trial over at once, not after the trial's claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_admits_calls_with_the_local_circuit_and_is_skipped_for_a_while() {
    let (up, _healthy) = flaky().await;
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rt = runtime(&up.url(), Down(asked.clone()), None);
    let a = FleetClient::new(&rt).unwrap();
    // The store is down: the in-process circuit still counts and opens.
    for _ in 0..3 {
        assert!(is_status(&a.breaker().await));
    }
    assert!(is_open(&a.breaker().await));
    assert_eq!(up.hits(), 3);
    // One step, retried once (its outcome was unknown), then the store is left alone for 500 ms:
    // an outage costs one store timeout, not one per call.
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(550)).await;
    let _ = a.breaker().await;
    assert_eq!(asked.load(Ordering::SeqCst), 4, "probed again after 500 ms");
}

/// A store implementing every verb whose every operation fails as unavailable (and is counted).
struct Down(Arc<std::sync::atomic::AtomicUsize>);

impl Down {
    fn down<'a, T: Send + 'a>(&self, op: &'static str) -> StoreFuture<'a, T> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Err(StoreError::new(op, StoreErrorKind::Unavailable, "down")) })
    }
}

impl Store for Down {
    fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<bytes::Bytes>> {
        self.down("get")
    }
    fn set<'a>(&'a self, _: &'a str, _: bytes::Bytes, _: Duration) -> StoreFuture<'a, ()> {
        self.down("set")
    }
    fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
        self.down("delete")
    }
    fn capabilities(&self) -> Verbs {
        Verbs::all()
    }
    fn circuit<'a>(&'a self, _: &'a str, _: CircuitStep) -> StoreFuture<'a, CircuitReply> {
        self.down("circuit")
    }
}

// --- On Redis ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_prefixes_on_one_redis_share_nothing_and_one_prefix_shares_everything() {
    let redis = Redis::start(&[]);
    let up = Upstream::start(|_| Reply::bytes(b"v")).await;
    let url = redis.url();
    let connect = || stitch::store::RedisStore::connect(&url);
    let a1 = FleetClient::new(&runtime(
        &up.url(),
        connect().await.unwrap(),
        Some("fleet-a"),
    ))
    .unwrap();
    let b = FleetClient::new(&runtime(
        &up.url(),
        connect().await.unwrap(),
        Some("fleet-b"),
    ))
    .unwrap();
    let a2 = FleetClient::new(&runtime(
        &up.url(),
        connect().await.unwrap(),
        Some("fleet-a"),
    ))
    .unwrap();

    // Throttle budget (1/s, wait at most 50 ms): each fleet has its own.
    assert!(a1.paced().await.is_ok());
    assert!(b.paced().await.is_ok(), "another prefix: another budget");
    assert!(
        matches!(a2.paced().await, Err(Error::Throttled { .. })),
        "the same prefix: the same budget, already spent"
    );

    // Cache: an entry written by fleet-a is served to fleet-a's other runtime, not to fleet-b.
    let before = up.hits();
    assert_eq!(a1.cached().await.unwrap(), "v");
    assert_eq!(b.cached().await.unwrap(), "v");
    assert_eq!(
        up.hits(),
        before + 2,
        "fleet-b does not see fleet-a's entry"
    );
    assert_eq!(a2.cached().await.unwrap(), "v");
    assert_eq!(
        up.hits(),
        before + 2,
        "fleet-a's other runtime reads it from Redis"
    );

    // The keys really are under each prefix.
    let listed = redis.cli(&["KEYS", "*"]);
    let keys: Vec<&str> = listed.lines().collect();
    assert!(
        keys.iter().any(|k| k.starts_with("stitch:fleet-a:{c:")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with("stitch:fleet-b:{c:")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| k.starts_with("stitch:fleet-a:") || k.starts_with("stitch:fleet-b:")),
        "every key under a prefix: {keys:?}"
    );
}

/// Set in a worker's environment: `redis url|base url|concurrent calls`.
const WORKER: &str = "STITCH_CIRCUIT_WORKER";

/// A worker process: `n` concurrent calls of the shared stitch, then one line of results.
async fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let store = stitch::store::RedisStore::connect(parts[0]).await.unwrap();
    let api = FleetClient::new(&runtime(parts[1], store, None)).unwrap();
    let n: usize = parts[2].parse().unwrap();
    let mut results = Vec::new();
    if n == 1 {
        results.push(api.slow_breaker().await);
    } else {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move { api.slow_breaker().await })
            })
            .collect();
        for c in calls {
            results.push(c.await.unwrap());
        }
    }
    let count = |f: fn(&stitch::Result<String>) -> bool| results.iter().filter(|r| f(r)).count();
    println!(
        "CIRCUIT_RESULT {} {} {}",
        count(|r| r.is_ok()),
        count(is_open),
        count(is_status)
    );
}

/// Runs worker processes making `calls` calls each, all at once; sums their `(ok, open, failed)`.
fn run_workers(redis: &str, base: &str, workers: usize, calls: usize) -> (usize, usize, usize) {
    let children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "separate_processes_on_redis_share_one_circuit",
                    "--nocapture",
                ])
                .env(WORKER, format!("{redis}|{base}|{calls}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut sum = (0, 0, 0);
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("CIRCUIT_RESULT "))
            .unwrap_or_else(|| panic!("a worker reported nothing: {text}"));
        let n: Vec<usize> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        sum = (sum.0 + n[0], sum.1 + n[1], sum.2 + n[2]);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_redis_share_one_circuit() {
    if let Ok(spec) = std::env::var(WORKER) {
        worker(&spec).await;
        return;
    }
    let redis = Redis::start(&[]);
    let (up, healthy) = flaky().await;
    let (url, base) = (redis.url(), up.url());
    let run = |workers, calls| {
        let (url, base) = (url.clone(), base.clone());
        tokio::task::spawn_blocking(move || run_workers(&url, &base, workers, calls))
    };
    // `failures = 3` counted across processes: 2 in one, 1 in another, then a third is refused.
    assert_eq!(run(1, 2).await.unwrap(), (0, 0, 2));
    assert_eq!(run(1, 1).await.unwrap(), (0, 0, 1));
    let started = Instant::now();
    assert_eq!(
        run(1, 1).await.unwrap(),
        (0, 1, 0),
        "open for a third process"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "checked within the cooldown"
    );
    assert_eq!(up.hits(), 3);

    // After the cooldown, exactly one trial across 3 processes × 4 concurrent calls.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (ok, open, failed) = run(3, 4).await.unwrap();
    assert_eq!(
        (ok, open, failed),
        (1, 11, 0),
        "one half-open trial fleet-wide"
    );
    assert_eq!(up.hits(), 4);

    // The trial's success closed it for every process.
    assert_eq!(run(2, 1).await.unwrap(), (2, 0, 0));
    assert_eq!(up.hits(), 6);
}
