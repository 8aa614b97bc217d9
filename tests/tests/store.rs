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
        2,
        "one failed read, one failed write"
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
