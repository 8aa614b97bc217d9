//! Hostile-use probes of issue 10's semantics: several runtimes (each standing for a process) on one
//! store, `MemoryStore` or a real `redis-server`.

use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch::store::{Claimed, FillClaim, FillKeys, MemoryStore, Store, StoreFuture, Subscription};
use stitch::{Client, Runtime};
use stitch_tests::fleet::Redis;
use stitch_tests::hooked::{Hooked, Hooks};
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Fleet {
    #[stitch(get, path = "/users/{id}", cache = "1m")]
    async fn user(&self, id: u64) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/teams/{id}", cache = "1m")]
    async fn team(&self, id: u64) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/short/{id}", cache = "2s")]
    async fn short(&self, id: u64) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/me", cache = "1m")]
    async fn me(&self) -> stitch::Result<serde_json::Value>;
}

/// Counts requests; answers `{"n": <request number>, "for": <authorization>}` after `delay`.
async fn upstream(delay: Duration) -> (Upstream, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let up = Upstream::start(move |seen| {
        let i = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(json!({ "n": i, "for": seen.header("authorization").unwrap_or("none") }))
            .after(delay)
    })
    .await;
    (up, n)
}

fn instance(store: impl Store, up: &Upstream) -> FleetClient {
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .local_throttles()
        .principal_key([9; 32])
        .build()
        .unwrap();
    FleetClient::new(&rt).unwrap()
}

/// What a view of a shared `MemoryStore` changes ([`SlowClaims`]): its fill claims answer
/// `delay_ms` late (the answer is read at once, delivered late: a slow network), its events
/// arrive `events_ms` late, and its claims are counted.
#[derive(Clone, Default)]
struct Slow {
    delay_ms: Arc<AtomicU64>,
    events_ms: u64,
    claims: Arc<AtomicUsize>,
}

/// A view of a shared `MemoryStore` through [`Slow`].
type SlowClaims = Hooked<Slow>;

impl Hooks for Slow {
    fn fill_claim<'a>(
        &'a self,
        inner: &'a MemoryStore,
        keys: FillKeys<'a>,
        claim: FillClaim,
    ) -> StoreFuture<'a, Claimed> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        let answer = inner.fill_claim(keys, claim);
        Box::pin(async move {
            let answer = answer.await;
            tokio::time::sleep(delay).await;
            answer
        })
    }

    fn subscribe<'a>(
        &'a self,
        inner: &'a MemoryStore,
        channel: &'a str,
    ) -> StoreFuture<'a, Subscription> {
        let lag = Duration::from_millis(self.events_ms);
        let inner = inner.subscribe(channel);
        Box::pin(async move {
            let mut events = inner.await?;
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    tokio::time::sleep(lag).await;
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Subscription::from_receiver(rx))
        })
    }
}

/// Two instances on one `MemoryStore`: A directly, B through [`SlowClaims`] (subscribed and
/// synced), and B's view, to slow its claims down.
async fn direct_and_slow(up: &Upstream) -> (FleetClient, FleetClient, SlowClaims) {
    let store = MemoryStore::new(10_000);
    let a = instance(store.clone(), up);
    let slow = SlowClaims {
        inner: store,
        hooks: Slow::default(),
    };
    let b = instance(slow.clone(), up);
    b.team(0).await.unwrap();
    (a, b, slow)
}

/// Issue 10 §3: "An invalidation issued while a request for that key is in flight must not be
/// undone when the flight lands". Here the request in flight is B's shared-tier read (a hit on
/// the value A filled) when A invalidates the entry: B's caller may get the old value, but B's
/// in-process tier must not keep it for the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_invalidation_during_a_shared_read_wins() {
    let (up, hits) = upstream(Duration::ZERO).await;
    let (a, b, slow) = direct_and_slow(&up).await;
    let first = a.user(1).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    slow.hooks.delay_ms.store(300, Ordering::SeqCst);
    let read = {
        let b = b.clone();
        tokio::spawn(async move { b.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(stitch::invalidate(a.user(1)).await, "A had the entry");
    // B's caller may get the old value (or a fresher one).
    read.await.unwrap().unwrap();
    slow.hooks.delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let next = b.user(1).await.unwrap();
    assert_ne!(
        next, first,
        "B serves the invalidated value from its in-process tier"
    );
}

/// The same race with a whole-stitch invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stitch_invalidation_during_a_shared_read_wins() {
    let (up, _hits) = upstream(Duration::ZERO).await;
    let (a, b, slow) = direct_and_slow(&up).await;
    let first = a.user(1).await.unwrap();
    slow.hooks.delay_ms.store(300, Ordering::SeqCst);
    let read = {
        let b = b.clone();
        tokio::spawn(async move { b.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.runtime().invalidate_stitch(FleetClient::USER);
    let _ = read.await.unwrap().unwrap();
    slow.hooks.delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_ne!(b.user(1).await.unwrap(), first);
    assert_ne!(a.user(1).await.unwrap(), first);
}

/// README: "A shared hit fills the in-process tier for at most the shared entry's remaining
/// lifetime."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_hit_never_outlives_the_shared_entry() {
    let (up, hits) = upstream(Duration::ZERO).await;
    let store = MemoryStore::new(10_000);
    let (a, b) = (instance(store.clone(), &up), instance(store.clone(), &up));
    let first = a.short(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.short(1).await.unwrap(), first, "a shared hit");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // 2.2 s after the fill: expired in the store, so it must be expired in B too.
    assert_ne!(
        b.short(1).await.unwrap(),
        first,
        "B's copy outlived the entry"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// README: "`stitch::invalidate(client.user(7)).await` (nothing is sent; returns whether an
/// entry existed)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_reports_whether_an_entry_existed_anywhere() {
    let (up, hits) = upstream(Duration::ZERO).await;
    let store = MemoryStore::new(10_000);
    let (a, b) = (instance(store.clone(), &up), instance(store.clone(), &up));
    b.team(0).await.unwrap();
    assert!(
        !stitch::invalidate(a.user(1)).await,
        "nothing cached yet: {}",
        hits.load(Ordering::SeqCst)
    );
    // Let that invalidation's notification land first (see
    // `the_refetch_after_an_exact_invalidation_is_shared` for what it does to a flight).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = hits.load(Ordering::SeqCst);
    a.user(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // the write behind the call
    assert!(
        stitch::invalidate(b.user(1)).await,
        "A's entry, in the store"
    );
    assert!(!stitch::invalidate(b.user(1)).await, "gone");
    tokio::time::sleep(Duration::from_millis(50)).await; // the notification reaches A
    assert!(!stitch::invalidate(a.user(1)).await, "gone in A too");
    assert_eq!(hits.load(Ordering::SeqCst), before + 1, "nothing sent");

    // Plain in-process runtime.
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let c = FleetClient::new(&rt).unwrap();
    assert!(!stitch::invalidate(c.user(1)).await);
    c.user(1).await.unwrap();
    assert!(stitch::invalidate(c.user(1)).await);
    assert!(!stitch::invalidate(c.user(1)).await);
}

/// README: "a client's stitches with `client.invalidate_all()` ... With a fleet store all four
/// reach every process".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_invalidate_all_reaches_another_instance() {
    let (up, hits) = upstream(Duration::ZERO).await;
    let store = MemoryStore::new(10_000);
    let (a, b) = (instance(store.clone(), &up), instance(store.clone(), &up));
    let u = a.user(1).await.unwrap();
    let t = a.team(1).await.unwrap();
    assert_eq!(b.user(1).await.unwrap(), u);
    assert_eq!(b.team(1).await.unwrap(), t);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    b.invalidate_all();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_ne!(a.user(1).await.unwrap(), u);
    assert_ne!(a.team(1).await.unwrap(), t);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

async fn redis_instance(redis: &Redis, up: &Upstream, auth: Option<&str>) -> FleetClient {
    let store = stitch::store::RedisStore::connect(&redis.url())
        .await
        .unwrap();
    let mut b = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .principal_key([9; 32])
        .store_timeout(Duration::from_millis(100));
    if let Some(token) = auth {
        b = b.default_header("authorization", token);
    }
    FleetClient::new(&b.build().unwrap()).unwrap()
}

/// Issue 10 on a real Redis: the four invalidations reach another runtime's in-process tier,
/// an invalidation during a flight wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_invalidations_reach_the_other_runtime() {
    let redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::ZERO).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    let wait = || tokio::time::sleep(Duration::from_millis(50));

    let v = a.user(1).await.unwrap();
    assert_eq!(b.user(1).await.unwrap(), v);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(stitch::invalidate(a.user(1)).await);
    wait().await;
    let v2 = b.user(1).await.unwrap();
    assert_ne!(v2, v, "exact");
    assert_eq!(a.user(1).await.unwrap(), v2);

    b.runtime().invalidate_stitch(FleetClient::USER);
    wait().await;
    let v3 = a.user(1).await.unwrap();
    assert_ne!(v3, v2, "stitch");
    assert_eq!(b.user(1).await.unwrap(), v3);

    a.invalidate_all();
    wait().await;
    let v4 = b.user(1).await.unwrap();
    assert_ne!(v4, v3, "client");
    assert_eq!(a.user(1).await.unwrap(), v4);

    b.runtime().invalidate_all();
    wait().await;
    let v5 = a.user(1).await.unwrap();
    assert_ne!(v5, v4, "runtime");
    assert_eq!(b.user(1).await.unwrap(), v5);
    assert_eq!(hits.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_invalidation_during_a_flight_wins() {
    let redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::from_millis(300)).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    b.team(0).await.unwrap();
    a.team(0).await.unwrap();
    let base = hits.load(Ordering::SeqCst);
    let flight = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // B joins the flight as a fleet waiter.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.runtime().invalidate_stitch(FleetClient::USER);
    let old = flight.await.unwrap().unwrap();
    let _ = waiter.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = hits.load(Ordering::SeqCst) - base;
    let a2 = a.user(1).await.unwrap();
    let b2 = b.user(1).await.unwrap();
    assert_ne!(
        a2, old,
        "A kept the value landed after the invalidation ({seen})"
    );
    assert_ne!(
        b2, old,
        "B kept the value landed after the invalidation ({seen})"
    );
}

/// Issue 10 §6: "a store failure or timeout makes the cache fall back to in-process behaviour
/// ... never failing the call".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_calls_still_succeed() {
    let mut redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::ZERO).await;
    let a = redis_instance(&redis, &up, None).await;
    a.user(1).await.unwrap();
    redis.kill();
    let started = Instant::now();
    for i in 0..5 {
        a.user(2).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        a.user(1).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    // Invalidating with the store down neither hangs nor fails.
    let _ = stitch::invalidate(a.user(2)).await;
    a.user(3).await.unwrap();
    println!(
        "down: {:?}, hits {}",
        started.elapsed(),
        hits.load(Ordering::SeqCst)
    );
    // In-process coalescing still holds.
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.team(9).await })
        })
        .collect();
    let before = hits.load(Ordering::SeqCst);
    for c in calls {
        c.await.unwrap().unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst) - before, 1);
    redis.restart();
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.user(4).await.unwrap();
}

/// Issue 10 §5: principals across runtimes on one Redis: the same credential shares, another
/// never reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_principals_across_runtimes() {
    let redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::from_millis(20)).await;
    let alice1 = redis_instance(&redis, &up, Some("Bearer alice")).await;
    let alice2 = redis_instance(&redis, &up, Some("Bearer alice")).await;
    let bob = redis_instance(&redis, &up, Some("Bearer bob")).await;
    let anon = redis_instance(&redis, &up, None).await;
    let a = alice1.me().await.unwrap();
    assert_eq!(a["for"], "Bearer alice");
    assert_eq!(alice2.me().await.unwrap(), a, "same credential, shared");
    assert_eq!(bob.me().await.unwrap()["for"], "Bearer bob");
    assert_eq!(anon.me().await.unwrap()["for"], "none");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Bound principals on one runtime.
    let x = alice1.as_principal("x").me().await.unwrap();
    let y = alice2.as_principal("y").me().await.unwrap();
    assert_ne!(x["n"], y["n"]);
    assert_eq!(alice2.as_principal("x").me().await.unwrap(), x);
}

/// README: "One request per cold key for the whole fleet" and (issue 10) "a value fetched by one
/// process is a hit in another (no upstream request)". After an exact invalidation, the
/// invalidating runtime's next fetch of that key, sent after the invalidation returned, must be
/// kept and shared like any other (the upstream takes 100 ms, as real ones do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refetch_after_an_exact_invalidation_is_shared() {
    let (up, hits) = upstream(Duration::from_millis(100)).await;
    // Events take 5 ms to arrive, as over a network.
    let store = SlowClaims {
        hooks: Slow {
            events_ms: 5,
            ..Slow::default()
        },
        ..SlowClaims::default()
    };
    let (a, b) = (instance(store.clone(), &up), instance(store.clone(), &up));
    let first = a.user(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.user(1).await.unwrap(), first);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    assert!(stitch::invalidate(a.user(1)).await);
    let fresh = a.user(1).await.unwrap();
    assert_ne!(fresh, first);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let on_a = a.user(1).await.unwrap();
    let on_b = b.user(1).await.unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the refetched value was not kept: A got {on_a}, B got {on_b}"
    );
}

/// The same on a real Redis, where the invalidation's own notification takes a round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_the_refetch_after_an_exact_invalidation_is_shared() {
    let redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::from_millis(100)).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    let mut lost = Vec::new();
    for id in 1..=5 {
        let before = hits.load(Ordering::SeqCst);
        let first = a.user(id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(b.user(id).await.unwrap(), first);
        assert!(stitch::invalidate(a.user(id)).await);
        let fresh = a.user(id).await.unwrap();
        assert_ne!(fresh, first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.user(id).await.unwrap();
        b.user(id).await.unwrap();
        let sent = hits.load(Ordering::SeqCst) - before;
        if sent != 2 {
            lost.push((id, sent));
        }
    }
    assert!(
        lost.is_empty(),
        "(key, upstream requests) where the refetch after the invalidation was not kept (2 expected): {lost:?}"
    );
}

/// Issue 10 §6 with a hung store (SIGSTOP): calls keep succeeding, bounded by the store timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_calls_still_succeed_quickly() {
    let redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::ZERO).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    a.user(1).await.unwrap();
    redis.signal("STOP");
    let mut slowest = Duration::ZERO;
    for i in 0..10u64 {
        let started = Instant::now();
        a.user(100 + i)
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        b.user(1).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        stitch::invalidate(b.user(7)).await;
        slowest = slowest.max(started.elapsed());
    }
    redis.signal("CONT");
    println!("slowest {slowest:?}, hits {}", hits.load(Ordering::SeqCst));
    assert!(slowest < Duration::from_millis(1000), "{slowest:?}");
}

/// The shared hit's remaining lifetime on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_shared_hit_never_outlives_the_shared_entry() {
    let redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::ZERO).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    let first = a.short(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.short(1).await.unwrap(), first, "a shared hit");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_ne!(
        b.short(1).await.unwrap(),
        first,
        "B's copy outlived the entry"
    );
}

/// README: "fleets with different prefixes on one store share nothing, runtimes with the same
/// prefix share all" (entries, the event channel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefixes_share_nothing() {
    let (up, hits) = upstream(Duration::ZERO).await;
    let store = MemoryStore::new(10_000);
    let with_prefix = |prefix: &str| {
        let rt = Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .local_throttles()
            .key_prefix(prefix)
            .principal_key([9; 32])
            .build()
            .unwrap();
        FleetClient::new(&rt).unwrap()
    };
    let (a, a2, b) = (with_prefix("a"), with_prefix("a"), with_prefix("b"));
    let va = a.user(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(a2.user(1).await.unwrap(), va, "same prefix shares");
    let vb = b.user(1).await.unwrap();
    assert_ne!(vb, va, "another prefix does not");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    a.runtime().invalidate_all();
    let _ = stitch::invalidate(a.user(1)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        b.user(1).await.unwrap(),
        vb,
        "b's entry survives a's invalidations"
    );
    assert_eq!(b.runtime().cached_entries(FleetClient::USER), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// Issue 10 §4 / README: "when the event channel reports lost messages (a reconnect, or a
/// connection the Redis driver's heartbeat finds dead: at most 3 s after it stopped delivering)
/// every in-process entry is flushed". An invalidation published while A's subscriber is
/// disconnected must not leave A serving the old value beyond that bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_invalidation_lost_by_a_killed_subscriber() {
    let redis = Redis::start(&[]);
    let (up, hits) = upstream(Duration::ZERO).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    let first = a.user(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.user(1).await.unwrap(), first);
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(stitch::invalidate(b.user(1)).await);
    b.runtime().invalidate_stitch(FleetClient::TEAM);
    let started = Instant::now();
    let mut stale_for = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(5) {
        if a.user(1).await.unwrap() == first {
            stale_for = started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "A served the invalidated value for {stale_for:?}; hits {}",
        hits.load(Ordering::SeqCst)
    );
    assert!(stale_for < Duration::from_millis(3500), "{stale_for:?}");
}

/// Issue 10 §2: "Only the in-process leader of a key talks to the store": concurrent callers of
/// one cold key in one runtime make one claim, and the hits after it none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_in_process_leader_claims() {
    let (up, hits) = upstream(Duration::from_millis(100)).await;
    let store = SlowClaims::default();
    let a = instance(store.clone(), &up);
    a.team(0).await.unwrap();
    let before = store.hooks.claims.load(Ordering::SeqCst);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.user(1).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    for _ in 0..10 {
        a.user(1).await.unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(store.hooks.claims.load(Ordering::SeqCst) - before, 1);
}

/// `stitch::invalidate` "returns whether an entry existed": a fill in flight elsewhere (on Redis
/// its lease lives in the entry's own key) is no entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_invalidate_during_a_fill_reports_no_entry() {
    let redis = Redis::start(&[]);
    let (up, _hits) = upstream(Duration::from_millis(300)).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    b.team(0).await.unwrap();
    let flight = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let existed = stitch::invalidate(b.user(1)).await;
    flight.await.unwrap().unwrap();
    assert!(!existed, "a lease reported as an entry");
}

/// `invalidate_stitch` / `invalidate_all` return at once (the fleet bump runs behind them): the
/// next call on the same runtime must not be served the invalidated value anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_call_right_after_invalidating_is_fresh() {
    let redis = Redis::start(&[]);
    let (up, _hits) = upstream(Duration::ZERO).await;
    let a = redis_instance(&redis, &up, None).await;
    let b = redis_instance(&redis, &up, None).await;
    let mut stale = Vec::new();
    for round in 0..5u64 {
        for how in ["stitch", "client", "runtime"] {
            let id = round * 10 + how.len() as u64;
            let old = a.user(id).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(b.user(id).await.unwrap(), old);
            match how {
                "stitch" => a.runtime().invalidate_stitch(FleetClient::USER),
                "client" => a.invalidate_all(),
                _ => a.runtime().invalidate_all(),
            }
            if a.user(id).await.unwrap() == old {
                stale.push((round, how, "same runtime"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if b.user(id).await.unwrap() == old {
                stale.push((round, how, "other runtime after 20 ms"));
            }
        }
    }
    assert!(stale.is_empty(), "served the invalidated value: {stale:?}");
}
