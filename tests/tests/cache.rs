//! Read-through cache and coalescing against a loopback upstream that counts its requests.

use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stitch::{Client, Error, Runtime};
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct Answer {
    n: usize,
    who: String,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/items/{id}", cache = "1m")]
    async fn item(&self, id: u32, #[query] lang: Option<&str>) -> stitch::Result<Answer>;

    #[stitch(get, path = "/vary", cache(ttl = "1m", vary = ["accept-language"]))]
    async fn localized(&self, #[header("accept-language")] lang: &str) -> stitch::Result<Answer>;

    #[stitch(get, path = "/me", cache = "1m")]
    async fn me(&self, #[header("authorization")] token: &str) -> stitch::Result<Answer>;

    #[stitch(get, path = "/public", cache(ttl = "1m", scope = "app"))]
    async fn public(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/bounded/{id}", cache(ttl = "1m", max_entries = 5))]
    async fn bounded(&self, id: u32) -> stitch::Result<Answer>;

    #[stitch(get, path = "/solo", cache(ttl = "1m", coalesce = false))]
    async fn solo(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/secret", sensitive)]
    async fn secret(&self) -> stitch::Result<Answer>;

    #[stitch(post, path = "/items")]
    async fn create(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/wrapped", cache = "1m")]
    async fn wrapped(&self) -> stitch::Result<stitch::Response<Answer>>;
}

/// An upstream answering `{"n": <request number>, "who": <authorization or "-">}` after `delay`.
async fn counting(delay: Duration) -> Upstream {
    let counter = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |seen| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let who = seen.header("authorization").unwrap_or("-").to_owned();
        Reply::json(json!({"n": n, "who": who})).after(delay)
    })
    .await
}

fn client(up: &Upstream) -> ApiClient {
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    ApiClient::new(&rt).unwrap()
}

#[tokio::test]
async fn repeats_within_the_ttl_never_touch_the_upstream() {
    let up = counting(Duration::ZERO).await;
    let api = client(&up);
    let first = api.item(1, None).await.unwrap();
    for _ in 0..5 {
        assert_eq!(api.item(1, None).await.unwrap(), first);
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn distinct_arguments_queries_and_vary_values_are_distinct_entries() {
    let up = counting(Duration::ZERO).await;
    let api = client(&up);
    let a = api.item(1, None).await.unwrap();
    let b = api.item(2, None).await.unwrap();
    let c = api.item(1, Some("cs")).await.unwrap();
    let d = api.item(1, Some("de")).await.unwrap();
    assert_eq!(up.hits(), 4);
    assert_eq!(api.item(1, Some("cs")).await.unwrap(), c);
    assert_eq!(up.hits(), 4);
    assert!(a != b && b != c && c != d);

    let en = api.localized("en").await.unwrap();
    let fr = api.localized("fr").await.unwrap();
    assert_ne!(en, fr);
    assert_eq!(api.localized("en").await.unwrap(), en);
    assert_eq!(up.hits(), 6);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_ttl() {
    let up = counting(Duration::ZERO).await;
    let api = client(&up);
    api.item(1, None).await.unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    api.item(1, None).await.unwrap();
    assert_eq!(up.hits(), 1, "still fresh at 59s");
    tokio::time::advance(Duration::from_secs(2)).await;
    api.item(1, None).await.unwrap();
    assert_eq!(up.hits(), 2, "expired at 61s");
}

#[tokio::test]
async fn writes_and_sensitive_stitches_are_never_cached_or_coalesced() {
    let up = counting(Duration::from_millis(50)).await;
    let api = client(&up);
    let (a, b) = tokio::join!(api.create(), api.create());
    assert_ne!(a.unwrap(), b.unwrap());
    let (a, b) = tokio::join!(api.secret(), api.secret());
    assert_ne!(a.unwrap(), b.unwrap());
    api.secret().await.unwrap();
    assert_eq!(up.hits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_cold_calls_make_one_upstream_request() {
    let up = counting(Duration::from_millis(300)).await;
    let api = client(&up);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10_000 {
        let api = api.clone();
        tasks.spawn(async move { api.item(9, None).await });
    }
    let mut values = Vec::new();
    while let Some(r) = tasks.join_next().await {
        values.push(r.unwrap().unwrap());
    }
    assert_eq!(up.hits(), 1);
    assert!(values.iter().all(|v| v.n == 1));
    assert_eq!(
        api.runtime().requests_in_flight(),
        0,
        "the in-flight entry is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_a_fast_upstream_still_makes_one_request() {
    // With no upstream delay the first flight ends while callers are still arriving: a caller
    // that missed the cache just before the value was stored must find it, not lead a new flight.
    let up = counting(Duration::ZERO).await;
    for round in 0..40u32 {
        let api = client(&up);
        let before = up.hits();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10_000 {
            let api = api.clone();
            tasks.spawn(async move { api.item(round, None).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(up.hits() - before, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_leader_does_not_strand_or_fail_followers() {
    let up = counting(Duration::from_millis(300)).await;
    let api = client(&up);
    let leader = {
        let api = api.clone();
        tokio::spawn(async move { api.item(5, None).await })
    };
    while up.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let followers: Vec<_> = (0..20)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.item(5, None).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for f in followers {
        assert_eq!(f.await.unwrap().unwrap().n, 1);
    }
    assert!(up.hits() <= 2, "at most one more upstream request");
    assert_eq!(
        up.hits(),
        1,
        "in fact none: the shared request outlives its first caller"
    );
    assert_eq!(api.runtime().requests_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_caller_cancels_the_request_and_leaves_no_entry() {
    let up = counting(Duration::from_secs(5)).await;
    let api = client(&up);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.item(6, None).await })
        })
        .collect();
    while up.hits() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(api.runtime().requests_in_flight(), 1);
    for c in calls {
        c.abort();
        let _ = c.await;
    }
    assert_eq!(api.runtime().requests_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_failure_reaches_every_waiting_follower_and_is_not_stored() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let up = Upstream::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(503, "down").after(Duration::from_millis(200))
        } else {
            Reply::json(json!({"n": 2, "who": "-"}))
        }
    })
    .await;
    let api = client(&up);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.item(1, None).await })
        })
        .collect();
    for c in calls {
        match c.await.unwrap() {
            Err(Error::Status { status, .. }) => assert_eq!(status.as_u16(), 503),
            other => panic!("expected the shared 503, got {other:?}"),
        }
    }
    assert_eq!(up.hits(), 1);
    assert_eq!(
        api.item(1, None).await.unwrap().n,
        2,
        "errors are never stored"
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn decode_failures_are_never_stored() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let up = Upstream::start(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::json(json!({"unexpected": true}))
        } else {
            Reply::json(json!({"n": 2, "who": "-"}))
        }
    })
    .await;
    let api = client(&up);
    assert!(matches!(api.item(1, None).await, Err(Error::Decode { .. })));
    assert_eq!(api.item(1, None).await.unwrap().n, 2);
    assert_eq!(api.item(1, None).await.unwrap().n, 2);
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn coalescing_can_be_turned_off() {
    let up = counting(Duration::from_millis(100)).await;
    let api = client(&up);
    let (a, b, c) = tokio::join!(api.solo(), api.solo(), api.solo());
    let _ = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(up.hits(), 3);
    api.solo().await.unwrap();
    assert_eq!(up.hits(), 3, "still cached");
}

/// A tiny deterministic generator, so the property test needs no extra crate and is reproducible.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_ever_reaches_the_wrong_principal() {
    let up = counting(Duration::from_millis(2)).await;
    let api = client(&up);
    for seed in [1u64, 7, 42] {
        api.invalidate_all();
        let mut rng = Lcg(seed);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..600 {
            let principal = rng.below(12);
            let id = rng.below(4) as u32;
            let bound = rng.below(2) == 0;
            let api = api.clone();
            tasks.spawn(async move {
                if bound {
                    // Explicit binding: the upstream cannot tell principals apart, so any sharing
                    // would show as one principal receiving another's request number.
                    let got = api
                        .as_principal(&format!("user-{principal}"))
                        .item(id, None)
                        .await;
                    (format!("bound-{principal}"), id, got.unwrap())
                } else {
                    // Credential-derived: the upstream echoes the token it was sent.
                    let token = format!("Bearer token-{principal}");
                    let got = api.me(&token).await.unwrap();
                    assert_eq!(
                        got.who, token,
                        "a response for another credential was served"
                    );
                    (format!("token-{principal}"), id, got)
                }
            });
        }
        let mut owner_of_n = std::collections::HashMap::new();
        while let Some(r) = tasks.join_next().await {
            let (principal, _id, answer) = r.unwrap();
            let owner = owner_of_n
                .entry(answer.n)
                .or_insert_with(|| principal.clone());
            assert_eq!(
                owner, &principal,
                "response #{} was served to two principals",
                answer.n
            );
        }
    }
}

#[tokio::test]
async fn app_scope_shares_entries_across_principals() {
    let up = counting(Duration::ZERO).await;
    let api = client(&up);
    let a = api.as_principal("alice").public().await.unwrap();
    let b = api.as_principal("bob").public().await.unwrap();
    let anon = api.public().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(b, anon);
    assert_eq!(up.hits(), 1);
    // The default scope keeps them apart.
    api.as_principal("alice").item(1, None).await.unwrap();
    api.as_principal("bob").item(1, None).await.unwrap();
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn app_scope_is_refused_when_the_runtime_attaches_credentials() {
    let rt = Runtime::builder()
        .base_url("http://127.0.0.1:1")
        .default_header("authorization", "Bearer shared")
        .build()
        .unwrap();
    match ApiClient::new(&rt) {
        Err(Error::Config { stitch, reason }) => {
            assert!(stitch.ends_with("Api::public"), "{stitch}");
            assert!(reason.contains("same_for_every_principal"), "{reason}");
        }
        other => panic!("expected a typed refusal, got {other:?}"),
    }

    #[stitch::seam]
    #[allow(dead_code)] // only its client is used
    trait Acknowledged {
        #[stitch(
            get,
            path = "/p",
            cache(ttl = "1m", scope = "app", same_for_every_principal)
        )]
        async fn p(&self) -> stitch::Result<Answer>;
    }
    AcknowledgedClient::new(&rt).expect("acknowledged sharing is allowed");
}

#[tokio::test]
async fn max_entries_bounds_the_in_process_tier() {
    let up = counting(Duration::ZERO).await;
    let api = client(&up);
    for id in 0..200 {
        api.bounded(id).await.unwrap();
    }
    let held = api.runtime().cached_entries(ApiClient::ENDPOINTS[4]);
    assert!(held <= 5, "held {held} entries");
    assert!(held >= 1);
}

#[tokio::test]
async fn invalidation_of_one_entry_one_stitch_and_everything() {
    let up = counting(Duration::ZERO).await;
    let api = client(&up);
    api.item(1, None).await.unwrap();
    api.item(2, None).await.unwrap();
    api.public().await.unwrap();
    assert_eq!(up.hits(), 3);

    assert!(
        stitch::invalidate(api.item(1, None)).await,
        "the entry existed"
    );
    assert!(!stitch::invalidate(api.item(1, None)).await, "and is gone");
    assert!(
        !stitch::invalidate(api.create()).await,
        "uncached stitches: nothing to do"
    );
    assert_eq!(up.hits(), 3, "invalidating sends nothing");
    api.item(1, None).await.unwrap();
    api.item(2, None).await.unwrap();
    assert_eq!(up.hits(), 4, "only item(1) was refetched");

    api.runtime().invalidate_stitch(ApiClient::ENDPOINTS[0]);
    api.item(1, None).await.unwrap();
    api.item(2, None).await.unwrap();
    api.public().await.unwrap();
    assert_eq!(up.hits(), 6, "both item entries, not public");

    api.runtime().invalidate_all();
    api.item(1, None).await.unwrap();
    api.public().await.unwrap();
    assert_eq!(up.hits(), 8);

    api.invalidate_all();
    api.public().await.unwrap();
    assert_eq!(up.hits(), 9);
}

#[tokio::test]
async fn response_wrappers_are_cached_with_their_status_and_headers() {
    let up = Upstream::start(|_| Reply::json(json!({"n": 1, "who": "-"})).header("etag", "\"v1\""))
        .await;
    let api = client(&up);
    let first = api.wrapped().await.unwrap();
    let second = api.wrapped().await.unwrap();
    assert_eq!(second.headers()["etag"], "\"v1\"");
    assert_eq!(first.value(), second.value());
    assert_eq!(up.hits(), 1);
}

/// Outputs that are not JSON (text, bytes, a response around text) are decoded into the cache and
/// cloned out of it by their descriptor's policy, like JSON ones.
#[stitch::seam(base_url = "http://declared.invalid")]
trait Raw {
    #[stitch(get, path = "/text", cache = "1m")]
    async fn text(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/bytes", cache = "1m")]
    async fn bytes(&self) -> stitch::Result<stitch::Bytes>;

    #[stitch(get, path = "/wrapped-text", cache = "1m")]
    async fn wrapped_text(&self) -> stitch::Result<stitch::Response<String>>;
}

#[tokio::test]
async fn text_and_bytes_outputs_are_cached_and_cloned_out() {
    let counter = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::bytes(format!("reply {n}").as_bytes())
    })
    .await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let raw = RawClient::new(&rt).unwrap();
    assert_eq!(raw.text().await.unwrap(), "reply 1");
    assert_eq!(raw.text().await.unwrap(), "reply 1", "a hit");
    assert_eq!(&raw.bytes().await.unwrap()[..], b"reply 2");
    assert_eq!(&raw.bytes().await.unwrap()[..], b"reply 2", "a hit");
    let first = raw.wrapped_text().await.unwrap();
    let second = raw.wrapped_text().await.unwrap();
    assert_eq!(first.value(), "reply 3");
    assert_eq!(second.value(), "reply 3", "a hit");
    assert_eq!(up.hits(), 3, "one request per stitch");
}
