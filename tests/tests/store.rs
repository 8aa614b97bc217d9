//! The store seam: runtimes attached to one store share entries; schema fingerprints keep a changed
//! output type from reading entries of its old shape; a failing store never fails a call.

use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stitch::store::{MemoryStore, Store, StoreError, StoreFuture};
use stitch::{Client, Runtime};
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct Old {
    id: u64,
    name: String,
}

/// The next deploy's shape: `name` became `full_name`. With `default`, an old entry would even
/// decode — silently wrong — if it were ever read.
#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct New {
    id: u64,
    #[serde(default)]
    full_name: String,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait OldDeploy {
    #[stitch(get, path = "/users/{id}", cache = "1m", name = "users.get")]
    async fn user(&self, id: u64) -> stitch::Result<Old>;

    #[stitch(get, path = "/me", cache = "1m", name = "users.me")]
    async fn me(&self, #[header("authorization")] token: &str) -> stitch::Result<Old>;
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait NewDeploy {
    #[stitch(get, path = "/users/{id}", cache = "1m", name = "users.get")]
    async fn user(&self, id: u64) -> stitch::Result<New>;
}

async fn counting() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |_| {
        let n = n.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(json!({"id": n, "name": "Ada", "full_name": "Ada Lovelace"}))
    })
    .await
}

fn runtime(up: &Upstream, store: &MemoryStore) -> Runtime {
    Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn runtimes_attached_to_one_store_share_entries() {
    let up = counting().await;
    let store = MemoryStore::default();
    let a = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    let b = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    let first = a.user(1).await.unwrap();
    assert_eq!(b.user(1).await.unwrap(), first);
    assert_eq!(up.hits(), 1, "the second process read the shared entry");

    // Explicit principals are fleet-stable.
    let alice = a.as_principal("alice").user(1).await.unwrap();
    assert_eq!(b.as_principal("alice").user(1).await.unwrap(), alice);
    assert_eq!(up.hits(), 2);
    b.as_principal("bob").user(1).await.unwrap();
    assert_eq!(up.hits(), 3, "another principal never reads alice's entry");
}

#[tokio::test]
async fn credential_scoped_entries_are_shared_only_with_a_common_principal_key() {
    let up = counting().await;
    let store = MemoryStore::default();
    let a = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    let b = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    a.me("Bearer t").await.unwrap();
    b.me("Bearer t").await.unwrap();
    assert_eq!(
        up.hits(),
        2,
        "random per-runtime keys: no sharing of credential-derived entries"
    );

    let keyed = |up: &Upstream| {
        Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .principal_key([7; 32])
            .build()
            .unwrap()
    };
    let c = OldDeployClient::new(&keyed(&up)).unwrap();
    let d = OldDeployClient::new(&keyed(&up)).unwrap();
    c.me("Bearer t").await.unwrap();
    d.me("Bearer t").await.unwrap();
    assert_eq!(up.hits(), 3, "a fleet with one principal key shares");
    d.me("Bearer other").await.unwrap();
    assert_eq!(up.hits(), 4);
}

#[tokio::test]
async fn a_new_output_shape_never_reads_entries_of_the_old_one() {
    let up = counting().await;
    let store = MemoryStore::default();
    let old = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    let new = NewDeployClient::new(&runtime(&up, &store)).unwrap();
    assert_eq!(
        OldDeployClient::ENDPOINTS[0].name(),
        NewDeployClient::ENDPOINTS[0].name()
    );
    old.user(1).await.unwrap();
    let fresh = new.user(1).await.unwrap();
    assert_eq!(up.hits(), 2, "the new deploy went upstream");
    assert_eq!(fresh.full_name, "Ada Lovelace");
    // And the new entry is shared among new-shape runtimes.
    let newer = NewDeployClient::new(&runtime(&up, &store)).unwrap();
    assert_eq!(newer.user(1).await.unwrap(), fresh);
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn invalidation_reaches_the_shared_store() {
    let up = counting().await;
    let store = MemoryStore::default();
    let a = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    let b = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    a.user(1).await.unwrap();
    assert!(stitch::invalidate(a.user(1)).await);
    b.user(1).await.unwrap();
    assert_eq!(up.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn shared_entries_expire_with_the_ttl() {
    let up = counting().await;
    let store = MemoryStore::default();
    let a = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    a.user(1).await.unwrap();
    tokio::time::advance(Duration::from_secs(61)).await;
    let b = OldDeployClient::new(&runtime(&up, &store)).unwrap();
    b.user(1).await.unwrap();
    assert_eq!(up.hits(), 2);
}

/// A store that is down: every operation fails.
struct Down(Arc<AtomicUsize>);

impl Store for Down {
    fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<bytes::Bytes>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(StoreError::unavailable("get", "connection refused")) })
    }
    fn set<'a>(&'a self, _: &'a str, _: bytes::Bytes, _: Duration) -> StoreFuture<'a, ()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(StoreError::unavailable("set", "connection refused")) })
    }
    fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::unavailable("delete", "connection refused")) })
    }
}

#[tokio::test]
async fn a_failing_store_never_fails_a_call() {
    let up = counting().await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(Down(attempts.clone()))
        .local_throttles() // a get/set/delete store: no fleet throttle verbs
        .build()
        .unwrap();
    let api = OldDeployClient::new(&rt).unwrap();
    let first = api.user(1).await.unwrap();
    assert_eq!(
        api.user(1).await.unwrap(),
        first,
        "the in-process tier still serves"
    );
    assert_eq!(up.hits(), 1);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "one failed read; it opened the store breaker, so the write was not attempted"
    );
    assert!(!stitch::invalidate(api.user(2)).await);
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Guarded {
    #[stitch(get, path = "/guarded", circuit(failures = 2, cooldown = "300ms"))]
    async fn call(&self) -> stitch::Result<()>;
}

#[tokio::test]
async fn an_open_circuit_is_shared_through_the_store() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let up = Upstream::start(move |_| {
        if h.load(Ordering::SeqCst) {
            Reply::status(200, "")
        } else {
            Reply::status(503, "down")
        }
    })
    .await;
    let store = MemoryStore::default();
    let a = GuardedClient::new(&runtime(&up, &store)).unwrap();
    let b = GuardedClient::new(&runtime(&up, &store)).unwrap();
    assert!(a.call().await.is_err());
    assert!(a.call().await.is_err());
    assert_eq!(up.hits(), 2);
    match b.call().await {
        Err(stitch::Error::CircuitOpen { retry_in, .. }) => {
            assert!(retry_in <= Duration::from_millis(300))
        }
        other => panic!("the other runtime must fail fast, got {other:?}"),
    }
    assert_eq!(
        up.hits(),
        2,
        "no request from the runtime that saw the shared state"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    healthy.store(true, Ordering::SeqCst);
    a.call()
        .await
        .expect("A's trial succeeds and closes the circuit for everyone");
    b.call().await.unwrap();
    assert_eq!(up.hits(), 4);
}

// ---------------------------------------------------------------------------------------------
// The store breaker: an outage costs one store timeout, then ~0, and recovers on its own.

/// A [`MemoryStore`] whose operations (get/set/delete and the circuit verb) hang for 5 s while
/// `hang` is set, like a paused Redis; `asked` counts every operation that reached it.
#[derive(Clone)]
struct Hanging {
    inner: MemoryStore,
    hang: Arc<std::sync::atomic::AtomicBool>,
    asked: Arc<AtomicUsize>,
}

impl Hanging {
    fn new(inner: &MemoryStore) -> Self {
        Hanging {
            inner: inner.clone(),
            hang: Arc::default(),
            asked: Arc::default(),
        }
    }

    fn then<'a, T: Send + 'a>(&'a self, op: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let hang = self.hang.load(Ordering::SeqCst);
        Box::pin(async move {
            if hang {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            op.await
        })
    }
}

impl Store for Hanging {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<bytes::Bytes>> {
        self.then(self.inner.get(key))
    }
    fn set<'a>(&'a self, key: &'a str, value: bytes::Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        self.then(self.inner.set(key, value, ttl))
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.then(self.inner.delete(key))
    }
    fn capabilities(&self) -> stitch::store::Verbs {
        stitch::store::Verbs::BASIC.with(stitch::store::Verb::Circuit)
    }
    fn circuit<'a>(
        &'a self,
        key: &'a str,
        step: stitch::store::CircuitStep,
    ) -> StoreFuture<'a, stitch::store::CircuitReply> {
        self.then(self.inner.circuit(key, step))
    }
}

fn hanging_runtime(up: &Upstream, store: &Hanging) -> Runtime {
    Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .store_timeout(Duration::from_millis(250))
        .local_throttles() // no fleet throttle verbs
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_hanging_store_costs_one_store_timeout_then_nothing_until_it_recovers() {
    let up = counting().await;
    let memory = MemoryStore::default();
    let store = Hanging::new(&memory);
    store.hang.store(true, Ordering::SeqCst);
    let rt = hanging_runtime(&up, &store);
    let api = OldDeployClient::new(&rt).unwrap();

    // The first call pays the store timeout once (its read), and the store breaker opens.
    let started = std::time::Instant::now();
    api.user(1).await.unwrap();
    let first = started.elapsed();
    assert!(first >= Duration::from_millis(240), "took {first:?}");
    let opened = std::time::Instant::now();

    // The breaker is the runtime's, not the cache's: the fleet circuit does not ask the store
    // either (its in-process stand-in admits the call).
    let started = std::time::Instant::now();
    GuardedClient::new(&rt).unwrap().call().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "the guarded call took {took:?}"
    );

    // Further cached calls (each a miss in the in-process tier, so each would read the store) do
    // not ask it while the breaker is open (500 ms): each costs about an upstream round trip.
    let mut done = 0;
    for id in 2..=6 {
        if opened.elapsed() > Duration::from_millis(400) {
            break; // a slow machine: the next call could be the probe
        }
        let started = std::time::Instant::now();
        api.user(id).await.unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(100), "call {id} took {took:?}");
        done += 1;
    }
    assert!(done >= 3, "only {done} calls within the breaker's window");
    assert_eq!(
        store.asked.load(Ordering::SeqCst),
        1,
        "only the first read reached the hanging store (its write and the circuit were skipped)"
    );
    assert_eq!(up.hits(), 2 + done);

    // The store recovers: after the breaker's window one probe asks it, succeeds, and entries are
    // written again: another runtime on the same store reads them without the upstream.
    store.hang.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = std::time::Instant::now();
    let fresh = api.user(7).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(200));
    let hits = up.hits();
    // The write runs behind the call (at once on a healthy in-memory store): give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = OldDeployClient::new(&runtime(&up, &memory)).unwrap();
    assert_eq!(other.user(7).await.unwrap(), fresh, "served from the store");
    assert_eq!(
        up.hits(),
        hits,
        "the entry was written to the recovered store"
    );
}
