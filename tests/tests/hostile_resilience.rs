//! Hostile probes of the resilience and throttle promises: a circuit's half-open trial racing a
//! call admitted before the circuit opened, waiters cancelled in a throttle's queue, pacing under
//! many concurrent callers.

use std::time::Duration;
use stitch::{Error, Runtime};
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(
        get,
        path = "/c/{mode}",
        timeout = "4s",
        circuit(failures = 1, cooldown = "200ms")
    )]
    async fn breaker(&self, mode: &str) -> stitch::Result<()>;

    #[stitch(get, path = "/q/{mode}", timeout = "4s", throttle(concurrency = 1))]
    async fn single(&self, mode: &str) -> stitch::Result<()>;

    #[stitch(get, path = "/paced", throttle = "10/s")]
    async fn paced(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/bursty", throttle(rate = "10/s", burst = 2))]
    async fn bursty(&self) -> stitch::Result<()>;

    #[stitch(
        get,
        path = "/r/{mode}",
        retry(attempts = 3, backoff = "fixed", base = "10ms")
    )]
    async fn retried(&self, mode: &str) -> stitch::Result<()>;
}

async fn upstream() -> Upstream {
    Upstream::start(|seen| {
        let ms = Duration::from_millis;
        match seen.path.rsplit('/').next().unwrap_or("") {
            "fail" => Reply::status(503, "down"),
            "straggler" => Reply::status(200, "").after(ms(1000)),
            "trial" => Reply::status(200, "").after(ms(2000)),
            "slow" => Reply::status(200, "").after(ms(600)),
            "forever" => Reply::status(503, "busy").header("retry-after", "99999999999999999999"),
            _ => Reply::status(200, ""),
        }
    })
    .await
}

fn client(up: &Upstream) -> ApiClient {
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    ApiClient::new(&rt).unwrap()
}

/// README: "after `cooldown` one trial call decides". A call admitted while the circuit was still
/// closed, which succeeds after the circuit opened and its trial began, is not that trial: it must
/// not close the circuit behind the trial's back and let other calls in before the trial resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_straggler_admitted_before_the_circuit_opened_does_not_decide_the_trial() {
    let up = upstream().await;
    straggler_scenario(&up, client(&up)).await;
}

/// The same against a fleet circuit (a `MemoryStore` attached, pass): README "after the cooldown
/// exactly one call of the whole fleet is the half-open trial (the others get
/// `Error::CircuitOpen`), and its success closes it for all".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_straggler_does_not_decide_a_fleet_circuits_trial() {
    let up = upstream().await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(stitch::store::MemoryStore::new(1000))
        .build()
        .unwrap();
    straggler_scenario(&up, ApiClient::new(&rt).unwrap()).await;
}

async fn straggler_scenario(_up: &Upstream, api: ApiClient) {
    let straggler = {
        let api = api.clone();
        tokio::spawn(async move { api.breaker("straggler").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        api.breaker("fail").await,
        Err(Error::Status { .. })
    ));
    assert!(matches!(
        api.breaker("ok").await,
        Err(Error::CircuitOpen { .. })
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let trial = {
        let api = api.clone();
        tokio::spawn(async move { api.breaker("trial").await })
    };
    // The straggler ends (t ≈ 1.0 s) while the trial (until t ≈ 2.5 s) is still running.
    straggler.await.unwrap().expect("the straggler succeeds");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during_trial = api.breaker("ok").await;
    assert!(
        matches!(during_trial, Err(Error::CircuitOpen { .. })),
        "a second call was admitted while the half-open trial was undecided: {during_trial:?}"
    );
    trial.await.unwrap().expect("the trial succeeds");
    api.breaker("ok").await.expect("closed by the trial");
}

/// README: "a FIFO concurrency cap". Waiters cancelled while queued must not keep (or leak) the
/// slot: once the holder ends, the next caller goes through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_waiters_leak_no_concurrency_slot() {
    let up = upstream().await;
    let api = client(&up);
    let holder = {
        let api = api.clone();
        tokio::spawn(async move { api.single("slow").await })
    };
    while up.hits() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.single("ok").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(up.hits(), 1, "the cap holds the waiters");
    for w in &waiters {
        w.abort();
    }
    for w in waiters {
        let _ = w.await;
    }
    holder.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(1), api.single("ok"))
        .await
        .expect("the slot came back")
        .unwrap();
    assert!(up.hits() <= 2 + 20);
    assert!(up.peak_in_flight() <= 1, "peak {}", up.peak_in_flight());
}

/// README: "`throttle = "2/s"`: even pacing (GCRA) at that rate", no burst unless declared: 30
/// concurrent callers at 10/s are spread over ~2.9 s, never two within a fraction of the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers_are_paced_without_a_burst() {
    let up = upstream().await;
    let api = client(&up);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let api = api.clone();
        tasks.spawn(async move { api.paced().await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(2700), "{elapsed:?}");
    let mut at: Vec<_> = up.seen().iter().map(|s| s.at).collect();
    at.sort();
    // Any window of 1 s holds at most 1 + 10 requests (burst 0).
    for (i, t) in at.iter().enumerate() {
        let n = at[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_millis(1000))
            .count();
        assert!(n <= 11, "{n} requests within 1 s of request {i}");
    }
}

/// README: "A `Retry-After` longer than the retry's `max` (10 s unless declared) is not waited for:
/// the call fails at once with the error carrying it". Delta-seconds beyond `u64` are longer still:
/// they must not be read as "no Retry-After" and retried after the plain backoff.
#[tokio::test]
async fn a_retry_after_too_large_for_u64_is_not_retried() {
    let up = upstream().await;
    let api = client(&up);
    let error = api.retried("forever").await.unwrap_err();
    assert_eq!(up.hits(), 1, "retried despite Retry-After: {error}");
    assert!(
        error
            .retry_after()
            .is_some_and(|d| d > Duration::from_secs(10)),
        "{:?}",
        error.retry_after()
    );
}

#[stitch::seam(
    base_url = "http://declared.invalid",
    timeout(total = "3s", each = "300ms")
)]
trait Bounded {
    #[stitch(get, path = "/t/{mode}", timeout = "2s")]
    async fn own_total(&self, mode: &str) -> stitch::Result<()>;

    #[stitch(
        get,
        path = "/t/{mode}",
        timeout(total = "250ms", each = "250ms"),
        retry(attempts = 5, backoff = "fixed", base = "100ms")
    )]
    async fn short_total(&self, mode: &str) -> stitch::Result<()>;
}

/// README: "a method's `total` replaces the seam's, the seam's `each` still applies"; the total
/// covers backoff and every attempt.
#[tokio::test]
async fn the_seams_each_bounds_an_attempt_under_a_methods_total() {
    let up = upstream().await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = BoundedClient::new(&rt).unwrap();
    let started = std::time::Instant::now();
    let error = api.own_total("slow").await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Timeout {
                bound: stitch::TimeoutBound::Each,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let error = api.short_total("fail").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(750),
        "{:?}",
        started.elapsed()
    );
    assert!(up.hits() <= 1 + 3, "{error}");
}

#[stitch::seam(
    base_url = "http://declared.invalid",
    throttle(concurrency = 1, max_wait = "50ms")
)]
trait Gated {
    #[stitch(get, path = "/g/{mode}", timeout = "3s")]
    async fn hold(&self, mode: &str) -> stitch::Result<()>;

    #[stitch(
        get,
        path = "/g/{mode}",
        timeout = "3s",
        circuit(failures = 1, cooldown = "100ms")
    )]
    async fn gate(&self, mode: &str) -> stitch::Result<()>;
}

/// README: "after `cooldown` one trial call decides". A trial that never reached the upstream
/// (refused by the throttle after `max_wait`) proves nothing about its health: it must not close
/// the circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_refused_by_the_throttle_does_not_close_the_circuit() {
    let up = upstream().await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = GatedClient::new(&rt).unwrap();
    let endpoint = GatedClient::GATE;
    assert!(matches!(api.gate("fail").await, Err(Error::Status { .. })));
    assert_eq!(rt.circuit_state(endpoint), "open");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let holder = {
        let api = api.clone();
        tokio::spawn(async move { api.hold("slow").await })
    };
    while up.hits() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let trial = api.gate("ok").await;
    assert!(matches!(trial, Err(Error::Throttled { .. })), "{trial:?}");
    assert_eq!(up.hits(), 2, "the trial was never sent");
    assert_ne!(
        rt.circuit_state(endpoint),
        "closed",
        "a trial that never reached the upstream closed the circuit"
    );
    holder.await.unwrap().unwrap();
    api.gate("ok").await.expect("the next caller is the trial");
    assert_eq!(rt.circuit_state(endpoint), "closed");
}

/// README: "`burst = 2`": at most `burst + 1 + ⌊rate × T⌋` requests in any window `T`; 20
/// concurrent callers at 10/s with burst 2 send 3 at once, then one every 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_burst_is_never_exceeded_under_concurrency() {
    let up = upstream().await;
    let api = client(&up);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let api = api.clone();
        tasks.spawn(async move { api.bursty().await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let mut at: Vec<_> = up.seen().iter().map(|s| s.at).collect();
    at.sort();
    for (i, t) in at.iter().enumerate() {
        let n = at[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_millis(500))
            .count();
        assert!(n <= 3 + 5, "{n} requests within 500 ms of request {i}");
    }
}
