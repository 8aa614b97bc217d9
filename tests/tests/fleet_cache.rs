//! The fleet cache protocol on one `MemoryStore` shared by several runtimes (each runtime stands
//! for one process: its own in-process tier, flights and generations). The same protocol runs on
//! Redis across real OS processes in `fleet_cache_redis.rs`.

use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch::store::{Claimed, FillClaim, FillKeys, MemoryStore, Store, StoreError, StoreFuture};
use stitch::{Client, Runtime};
use stitch_tests::hooked::{Hooked, Hooks};
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Fleet {
    #[stitch(get, path = "/users/{id}", cache = "1m")]
    async fn user(&self, id: u64) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/teams/{id}", cache = "1m")]
    async fn team(&self, id: u64) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/me", cache = "1m")]
    async fn me(&self, #[header("authorization")] token: &str)
        -> stitch::Result<serde_json::Value>;
}

/// An upstream counting requests per path, answering after `delay` with the request number (so
/// a refetch is visible in the value).
async fn upstream(delay: Duration, status: u16) -> (Upstream, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let up = Upstream::start(move |_| {
        let i = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if status == 200 {
            Reply::json(json!({ "n": i })).after(delay)
        } else {
            Reply::status(status, "upstream down").after(delay)
        }
    })
    .await;
    (up, n)
}

fn instance(store: &MemoryStore, up: &Upstream) -> FleetClient {
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .principal_key([9; 32])
        .fill_lease(Duration::from_millis(300))
        .build()
        .unwrap();
    FleetClient::new(&rt).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_missing_one_key_at_once_send_one_request_and_share_the_value() {
    let (up, hits) = upstream(Duration::from_millis(200), 200).await;
    let store = MemoryStore::new(10_000);
    let instances: Vec<_> = (0..4).map(|_| instance(&store, &up)).collect();
    for round in 1..=3u64 {
        let mut calls = Vec::new();
        for api in &instances {
            for _ in 0..25 {
                let api = api.clone();
                calls.push(tokio::spawn(async move { api.user(round).await }));
            }
        }
        let mut values = Vec::new();
        for c in calls {
            values.push(c.await.unwrap().unwrap());
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            round as usize,
            "round {round}: one upstream request for 4 instances × 25 callers"
        );
        assert!(values.windows(2).all(|w| w[0] == w[1]), "one value for all");
    }
    // A value fetched by one instance is a hit in a fresh one: no request.
    let late = instance(&store, &up);
    late.user(1).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_reaches_every_waiting_instance_once() {
    let (up, hits) = upstream(Duration::from_millis(150), 503).await;
    let store = MemoryStore::new(10_000);
    let (a, b) = (instance(&store, &up), instance(&store, &up));
    let (x, y) = tokio::join!(a.user(1), b.user(1));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the failure is shared, not repeated"
    );
    for e in [x.unwrap_err(), y.unwrap_err()] {
        assert_eq!(
            e.status(),
            Some(stitch::StatusCode::SERVICE_UNAVAILABLE),
            "{e}"
        );
    }
    // Negative entries are short: a call after it expired asks the upstream again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _ = a.user(1).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_on_one_instance_reaches_every_tier_of_the_others() {
    let (up, hits) = upstream(Duration::ZERO, 200).await;
    let store = MemoryStore::new(10_000);
    let (a, b) = (instance(&store, &up), instance(&store, &up));
    let first = a.user(1).await.unwrap();
    assert_eq!(b.user(1).await.unwrap(), first, "b reads a's entry");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Exact: b's in-process copy goes too.
    assert!(stitch::invalidate(a.user(1)).await);
    let deadline = Instant::now() + Duration::from_millis(200);
    while b.runtime().cached_entries(FleetClient::USER) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(b.runtime().cached_entries(FleetClient::USER), 0);
    let second = b.user(1).await.unwrap();
    assert_ne!(second, first, "refetched after the invalidation");
    assert_eq!(a.user(1).await.unwrap(), second);
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Whole stitch, issued on b: a's entries of `user` go, its `team` entries stay.
    a.team(1).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    b.runtime().invalidate_stitch(FleetClient::USER);
    wait_until(|| a.runtime().cached_entries(FleetClient::USER) == 0).await;
    assert_ne!(a.user(1).await.unwrap(), second);
    a.team(1).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 4, "team still cached");

    // The whole runtime, issued on a: b's entries of both stitches go.
    b.user(1).await.unwrap();
    b.team(1).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    a.runtime().invalidate_all();
    wait_until(|| {
        b.runtime().cached_entries(FleetClient::USER) == 0
            && b.runtime().cached_entries(FleetClient::TEAM) == 0
    })
    .await;
    b.user(1).await.unwrap();
    b.team(1).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 6);
}

async fn wait_until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(500);
    while !done() {
        assert!(Instant::now() < deadline, "not reached within 500 ms");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_flight_wins_over_the_value_it_lands() {
    let (up, hits) = upstream(Duration::from_millis(300), 200).await;
    let store = MemoryStore::new(10_000);
    let (a, b) = (instance(&store, &up), instance(&store, &up));
    let flight = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // On the other instance, and on the same one: both must win.
    stitch::invalidate(b.user(1)).await;
    let old = flight.await.unwrap().unwrap();
    assert_eq!(old["n"], 1, "the caller in flight still gets its answer");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let next = b.user(1).await.unwrap();
    assert_eq!(next["n"], 2, "the old value was not stored for the fleet");
    assert_eq!(
        a.user(1).await.unwrap(),
        next,
        "nor in the leader's own tier"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Same instance: invalidated while its own flight runs.
    let flight = {
        let a = a.clone();
        tokio::spawn(async move { a.team(1).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    stitch::invalidate(a.team(1)).await;
    flight.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.team(1).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 4, "the team was fetched again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_over_at_once_not_after_its_lease() {
    let (up, hits) = upstream(Duration::from_millis(200), 200).await;
    let store = MemoryStore::new(10_000);
    let (a, b) = (instance(&store, &up), instance(&store, &up));
    let leader = {
        let a = a.clone();
        tokio::spawn(async move { a.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    let value = waiter.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(value["n"].as_u64().is_some());
    // The waiter fetched itself right after the abandon: its fetch (200 ms) plus little, well
    // under the 300 ms lease plus the fetch.
    assert!(
        took < Duration::from_millis(450),
        "took {took:?}: the waiter waited out the lease"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_never_read_each_others_entries_across_instances() {
    let up = Upstream::start(|seen| {
        Reply::json(json!({ "for": seen.header("authorization").unwrap_or("none") }))
            .after(Duration::from_millis(5))
    })
    .await;
    let store = MemoryStore::new(10_000);
    let instances: Vec<_> = (0..4).map(|_| instance(&store, &up)).collect();
    let tokens: Vec<String> = (0..8).map(|i| format!("Bearer token-{i}")).collect();
    // A fixed pseudo-random spread of (instance, token) pairs, repeated so entries are shared.
    let mut seed = 0x9e37_79b9_u64;
    let mut calls = Vec::new();
    for _ in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let api = instances[(seed % 4) as usize].clone();
        let token = tokens[((seed >> 8) % 8) as usize].clone();
        calls.push(tokio::spawn(async move {
            let got = api.me(&token).await.unwrap();
            (token, got)
        }));
    }
    for c in calls {
        let (token, got) = c.await.unwrap();
        assert_eq!(
            got["for"],
            token.as_str(),
            "an entry of another principal was served"
        );
    }
    assert!(
        up.hits() <= 8,
        "entries are shared per principal: {} requests",
        up.hits()
    );
}

/// One instance's view of the shared `MemoryStore` that counts its fill claims and, once
/// [`Claims::refuse_after`] was called, answers only that many more and fails the rest as an
/// unreachable store would: whatever the instance gets after that, it got without asking.
#[derive(Clone)]
struct Claims {
    made: Arc<AtomicUsize>,
    allowed: Arc<AtomicUsize>,
}

impl Claims {
    fn new() -> Claims {
        Claims {
            made: Arc::default(),
            allowed: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }

    /// Claims made so far.
    fn made(&self) -> usize {
        self.made.load(Ordering::SeqCst)
    }

    /// From now on, answers `n` more claims and refuses the others.
    fn refuse_after(&self, n: usize) {
        self.allowed.store(self.made() + n, Ordering::SeqCst);
    }
}

impl Hooks for Claims {
    fn fill_claim<'a>(
        &'a self,
        inner: &'a MemoryStore,
        keys: FillKeys<'a>,
        claim: FillClaim,
    ) -> StoreFuture<'a, Claimed> {
        let made = self.made.fetch_add(1, Ordering::SeqCst) + 1;
        if made > self.allowed.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::unavailable("fill_claim", "refused")) });
        }
        inner.fill_claim(keys, claim)
    }
}

/// An instance on `store` through [`Claims`], already subscribed and synced (one call made).
async fn counted_instance(store: &MemoryStore, up: &Upstream) -> (FleetClient, Claims) {
    let claims = Claims::new();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(Hooked {
            inner: store.clone(),
            hooks: claims.clone(),
        })
        .local_throttles()
        .principal_key([9; 32])
        .fill_lease(Duration::from_millis(300))
        .build()
        .unwrap();
    let api = FleetClient::new(&rt).unwrap();
    let _ = api.team(0).await;
    (api, claims)
}

/// A leader with the default fill lease (3 s): its waiters re-check every 500 ms, well after
/// the 200 ms fetches of these tests end, so they only claim again when woken.
fn leader(store: &MemoryStore, up: &Upstream) -> FleetClient {
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .principal_key([9; 32])
        .build()
        .unwrap();
    FleetClient::new(&rt).unwrap()
}

/// The leader fetches `user(1)` (its upstream takes 200 ms); 50 ms in, `waiter` asks for it and
/// may claim once; its claims after that fail. Returns both outcomes.
async fn lead_and_wait(
    leader: &FleetClient,
    waiter: &FleetClient,
    claims: &Claims,
) -> (
    stitch::Result<serde_json::Value>,
    stitch::Result<serde_json::Value>,
) {
    let led = {
        let leader = leader.clone();
        tokio::spawn(async move { leader.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    claims.refuse_after(1);
    let waited = waiter.user(1).await;
    (led.await.unwrap(), waited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_instance_takes_the_value_from_the_completion_without_claiming_again() {
    let (up, hits) = upstream(Duration::from_millis(200), 200).await;
    let store = MemoryStore::new(10_000);
    let leader = leader(&store, &up);
    let (waiter, claims) = counted_instance(&store, &up).await;
    hits.store(0, Ordering::SeqCst);
    let (led, waited) = lead_and_wait(&leader, &waiter, &claims).await;
    let (led, waited) = (led.unwrap(), waited.expect("served from the notification"));
    assert_eq!(waited, led, "the leader's value");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one request: the waiter neither claimed again nor fetched"
    );
    // Kept in the waiter's in-process tier: no store, no request.
    assert_eq!(waiter.user(1).await.unwrap(), led);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_reaches_a_waiting_instance_in_the_completion() {
    let (up, hits) = upstream(Duration::from_millis(200), 503).await;
    let store = MemoryStore::new(10_000);
    let leader = leader(&store, &up);
    let (waiter, claims) = counted_instance(&store, &up).await;
    hits.store(0, Ordering::SeqCst);
    let (led, waited) = lead_and_wait(&leader, &waiter, &claims).await;
    for e in [led.unwrap_err(), waited.unwrap_err()] {
        assert_eq!(
            e.status(),
            Some(stitch::StatusCode::SERVICE_UNAVAILABLE),
            "{e}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the negative entry came with the notification: not repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_too_large_to_carry_is_claimed_again_after_the_notification() {
    let big = "x".repeat(100 * 1024);
    let up = Upstream::start(move |_| {
        Reply::json(json!({ "pad": big })).after(Duration::from_millis(200))
    })
    .await;
    let store = MemoryStore::new(10_000);
    let leader = leader(&store, &up);
    let (waiter, claims) = counted_instance(&store, &up).await;
    let before = (up.hits(), claims.made());
    let led = {
        let leader = leader.clone();
        tokio::spawn(async move { leader.user(1).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waited = waiter.user(1).await.unwrap();
    assert_eq!(waited, led.await.unwrap().unwrap());
    assert_eq!(up.hits() - before.0, 1, "one request for both instances");
    assert!(
        claims.made() - before.1 >= 2,
        "not carried: busy, then the stored value claimed after the notification"
    );
}
