//! Retries, timeouts, the circuit breaker, idempotency keys and the fault matrix, against a
//! loopback upstream scripted to fail.

use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stitch::auth::{Auth, AuthFuture};
use stitch::{Error, HeaderMap, Runtime, TimeoutBound};
use stitch_tests::{raw_server, Reply, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, serde::Deserialize, stitch::Fingerprint)]
struct Thing {
    id: u32,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/flaky", retry(attempts = 3, on = [503], backoff = "fixed", base = "10ms"))]
    async fn flaky(&self) -> stitch::Result<Thing>;

    #[stitch(get, path = "/after", retry(attempts = 3))]
    async fn after(&self) -> stitch::Result<Thing>;

    #[stitch(
        get,
        path = "/bounded",
        timeout = "500ms",
        throttle = "5/s",
        retry(attempts = 10, backoff = "fixed", base = "200ms")
    )]
    async fn bounded(&self) -> stitch::Result<Thing>;

    #[stitch(get, path = "/later", timeout = "2s", retry(attempts = 3))]
    async fn later(&self) -> stitch::Result<Thing>;

    #[stitch(
        post,
        path = "/orders",
        retry(attempts = 3, backoff = "fixed", base = "5ms"),
        idempotency
    )]
    async fn order(&self, #[body] item: &str) -> stitch::Result<Thing>;

    #[stitch(
        put,
        path = "/orders/{order_id}",
        retry(attempts = 3, backoff = "fixed", base = "5ms"),
        idempotency(header = "x-request-key", from = "order_id")
    )]
    async fn put_order(&self, order_id: u64) -> stitch::Result<Thing>;

    #[stitch(
        post,
        path = "/orders",
        retry(attempts = 2, backoff = "fixed", base = "5ms"),
        idempotency
    )]
    async fn order_with_key(&self, #[header("idempotency-key")] key: &str)
        -> stitch::Result<Thing>;

    #[stitch(get, path = "/breaker", circuit(failures = 3, cooldown = "300ms"))]
    async fn breaker(&self) -> stitch::Result<Thing>;

    #[stitch(
        get,
        path = "/paced",
        throttle = "5/s",
        retry(attempts = 3, backoff = "fixed", base = "1ms")
    )]
    async fn paced(&self) -> stitch::Result<Thing>;

    #[stitch(
        get,
        path = "/fault",
        cache = "1m",
        timeout(total = "5s", each = "300ms")
    )]
    async fn fault(&self) -> stitch::Result<Thing>;

    #[stitch(
        get,
        path = "/slow",
        retry(attempts = 3, backoff = "fixed", base = "1ms")
    )]
    async fn slow(&self) -> stitch::Result<Thing>;

    #[stitch(get, path = "/secure")]
    async fn secure(&self) -> stitch::Result<Thing>;
}

/// An upstream answering from a list of statuses in order (the last one repeats).
async fn sequence(statuses: &'static [u16]) -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst).min(statuses.len() - 1);
        match statuses[i] {
            200 => Reply::json(json!({"id": i})),
            s => Reply::status(s, "nope"),
        }
    })
    .await
}

/// A runtime whose HTTP client keeps no idle timers and whose throttles pace on tokio's clock, so
/// tests under paused time see only the pipeline's own timers, on one clock.
fn runtime(url: &str) -> Runtime {
    let http = reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap();
    Runtime::builder()
        .base_url(url)
        .http_client(http)
        .pacing_clock(stitch::throttle::PacingClock::Tokio)
        .build()
        .unwrap()
}

fn client(url: &str) -> ApiClient {
    ApiClient::new(&runtime(url)).unwrap()
}

#[tokio::test]
async fn retries_listed_statuses_until_success() {
    let up = sequence(&[503, 503, 200]).await;
    assert_eq!(client(&up.url()).flaky().await.unwrap(), Thing { id: 2 });
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn other_statuses_are_not_retried() {
    let up = sequence(&[400, 200]).await;
    match client(&up.url()).flaky().await {
        Err(Error::Status { status, .. }) => assert_eq!(status.as_u16(), 400),
        other => panic!("expected the 400, got {other:?}"),
    }
    assert_eq!(up.hits(), 1);
    let up = sequence(&[503, 503, 503, 200]).await;
    assert!(matches!(
        client(&up.url()).flaky().await,
        Err(Error::Status { .. })
    ));
    assert_eq!(up.hits(), 3, "attempts count the first try");
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_replaces_the_backoff() {
    let n = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |_| match n.fetch_add(1, Ordering::SeqCst) {
        0 => Reply::status(503, "busy").header("retry-after", "7"),
        1 => Reply::status(429, "slow down").header("retry-after", "2"),
        _ => Reply::json(json!({"id": 1})),
    })
    .await;
    client(&up.url()).after().await.unwrap();
    let at: Vec<_> = up.seen().iter().map(|s| s.at).collect();
    assert_eq!(at.len(), 3);
    assert_eq!(at[1] - at[0], Duration::from_secs(7));
    assert_eq!(at[2] - at[1], Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let n = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            let date =
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(4));
            Reply::status(503, "busy").header("retry-after", &date)
        } else {
            Reply::json(json!({"id": 1}))
        }
    })
    .await;
    client(&up.url()).after().await.unwrap();
    let at: Vec<_> = up.seen().iter().map(|s| s.at).collect();
    let gap = at[1] - at[0];
    // The date has one-second resolution.
    assert!(
        gap > Duration::from_secs(2) && gap <= Duration::from_secs(4),
        "{gap:?}"
    );
}

#[tokio::test]
async fn the_total_timeout_bounds_throttle_backoff_and_attempts() {
    let up = sequence(&[503]).await;
    let api = client(&up.url());
    let started = std::time::Instant::now();
    let err = api.bounded().await.unwrap_err();
    let elapsed = started.elapsed();
    // 500 ms of budget; the margin is for a loaded CI machine, not for another attempt.
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert!(
        matches!(
            err,
            Error::Status { .. }
                | Error::Throttled { .. }
                | Error::Timeout {
                    bound: TimeoutBound::Total,
                    ..
                }
        ),
        "{err:?}"
    );
    assert!(
        up.hits() <= 3,
        "{} attempts fit in 500 ms at 5/s",
        up.hits()
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_fails_at_once_carrying_it() {
    let up = Upstream::start(|_| Reply::status(503, "busy").header("retry-after", "5")).await;
    let started = std::time::Instant::now();
    let err = client(&up.url()).later().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "did not wait the 5 s"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_cancelled_call_is_not_retried() {
    let up = Upstream::start(|_| Reply::status(503, "").after(Duration::from_millis(300))).await;
    let api = client(&up.url());
    let call = tokio::spawn(async move { api.slow().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    call.abort();
    let _ = call.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn one_idempotency_key_per_logical_call_reused_by_every_attempt() {
    let up = sequence(&[503, 503, 200, 503, 200]).await;
    let api = client(&up.url());
    api.order("book").await.unwrap();
    api.order("pen").await.unwrap();
    let keys: Vec<String> = up
        .seen()
        .iter()
        .map(|s| {
            s.header("idempotency-key")
                .expect("sent on writes")
                .to_owned()
        })
        .collect();
    assert_eq!(keys.len(), 5);
    assert!(
        keys[..3].iter().all(|k| *k == keys[0]),
        "same key across attempts: {keys:?}"
    );
    assert!(keys[3..].iter().all(|k| *k == keys[3]));
    assert_ne!(keys[0], keys[3], "a new logical call gets a new key");
    assert_eq!(keys[0].len(), 36, "a UUID: {}", keys[0]);

    let up = sequence(&[503, 200]).await;
    client(&up.url()).put_order(4711).await.unwrap();
    assert!(up
        .seen()
        .iter()
        .all(|s| s.header("x-request-key") == Some("4711")));

    let up = sequence(&[503, 200]).await;
    client(&up.url()).order_with_key("mine").await.unwrap();
    assert!(
        up.seen()
            .iter()
            .all(|s| s.header("idempotency-key") == Some("mine")),
        "the caller's key wins"
    );

    let up = sequence(&[503, 200]).await;
    client(&up.url()).flaky().await.unwrap();
    assert!(
        up.seen()
            .iter()
            .all(|s| s.header("idempotency-key").is_none()),
        "never on reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_fails_fast_and_admits_one_trial() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let up = Upstream::start(move |_| {
        if h.load(Ordering::SeqCst) {
            Reply::json(json!({"id": 1})).after(Duration::from_millis(200))
        } else {
            Reply::status(503, "down")
        }
    })
    .await;
    let api = client(&up.url());
    let endpoint = ApiClient::ENDPOINTS[7];
    for _ in 0..3 {
        assert!(matches!(api.breaker().await, Err(Error::Status { .. })));
    }
    assert_eq!(api_runtime(&api).circuit_state(endpoint), "open");
    match api.breaker().await {
        Err(Error::CircuitOpen { retry_in, .. }) => assert!(retry_in <= Duration::from_millis(300)),
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert_eq!(up.hits(), 3, "failing fast touches no network");

    tokio::time::sleep(Duration::from_millis(350)).await;
    healthy.store(true, Ordering::SeqCst);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.breaker().await })
        })
        .collect();
    let (mut ok, mut fast) = (0, 0);
    for c in calls {
        match c.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::CircuitOpen { .. }) => fast += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        (ok, fast),
        (1, 49),
        "exactly one trial among 50 concurrent callers"
    );
    assert_eq!(up.hits(), 4);
    assert_eq!(api_runtime(&api).circuit_state(endpoint), "closed");
    api.breaker().await.unwrap();
    assert_eq!(up.hits(), 5);
}

fn api_runtime(api: &ApiClient) -> &Runtime {
    stitch::Client::runtime(api)
}

#[tokio::test(start_paused = true)]
async fn every_retry_acquires_the_throttle_again() {
    let up = sequence(&[503, 503, 200]).await;
    client(&up.url()).paced().await.unwrap();
    let at: Vec<_> = up.seen().iter().map(|s| s.at).collect();
    assert_eq!(at.len(), 3);
    assert_eq!(at[1] - at[0], Duration::from_millis(200));
    assert_eq!(at[2] - at[1], Duration::from_millis(200));
}

#[tokio::test]
async fn the_retry_budget_caps_the_extra_load() {
    let up = sequence(&[503]).await;
    let api = client(&up.url());
    for _ in 0..100 {
        let _ = api.flaky().await;
    }
    // Without a budget: 300 requests. With it: 100 first tries, 10 retries of floor, and a fifth
    // of a retry per call.
    assert!(up.hits() <= 100 + 10 + 20, "{} requests", up.hits());
    assert!(up.hits() > 100, "some retries still happen");
}

async fn fault_server(kind: &'static str) -> String {
    raw_server(move |mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        match kind {
            "reset" => {
                // Linger 0 turns the close into a TCP reset (and, being zero, cannot block on drop,
                // which is why the method is deprecated in general).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                drop(stream);
            }
            "trickle" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":")
                    .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            _ => {}
        }
    })
    .await
}

#[tokio::test]
async fn fault_matrix_gives_typed_errors_and_caches_nothing() {
    // Connection reset.
    let api = client(&fault_server("reset").await);
    assert!(matches!(api.fault().await, Err(Error::Transport { .. })));
    // A body trickling past `each`.
    let api = client(&fault_server("trickle").await);
    match api.fault().await {
        Err(Error::Timeout { bound, after, .. }) => {
            assert_eq!(bound, TimeoutBound::Each);
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("expected the per-attempt timeout, got {other:?}"),
    }

    let n = Arc::new(AtomicUsize::new(0));
    let mode = Arc::new(std::sync::Mutex::new("json"));
    let m = mode.clone();
    let up = Upstream::start(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
        match *m.lock().unwrap() {
            "malformed" => {
                Reply::bytes(b"{\"id\": 1,,}").header("content-type", "application/json")
            }
            "huge" => {
                Reply::bytes(&vec![b' '; 10 << 20]).header("content-type", "application/json")
            }
            "html" => Reply::bytes(b"<html>oops</html>")
                .header("content-type", "text/html; charset=utf-8"),
            _ => Reply::json(json!({"id": 9})),
        }
    })
    .await;
    let http = reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap();
    let rt = Runtime::builder()
        .base_url(up.url())
        .http_client(http)
        .max_response_bytes(1 << 20)
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    *mode.lock().unwrap() = "malformed";
    assert!(matches!(api.fault().await, Err(Error::Decode { .. })));
    *mode.lock().unwrap() = "huge";
    match api.fault().await {
        Err(Error::BodyTooLarge { limit, .. }) => assert_eq!(limit, 1 << 20),
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
    *mode.lock().unwrap() = "html";
    match api.fault().await {
        Err(Error::UnexpectedContentType { content_type, .. }) => {
            assert!(content_type.starts_with("text/html"))
        }
        other => panic!("expected UnexpectedContentType, got {other:?}"),
    }
    // None of the failures was stored: the next call goes upstream and gets the real value.
    *mode.lock().unwrap() = "json";
    assert_eq!(api.fault().await.unwrap(), Thing { id: 9 });
    assert_eq!(up.hits(), 4);
    assert_eq!(api.fault().await.unwrap(), Thing { id: 9 });
    assert_eq!(up.hits(), 4, "and that success is cached");
}

/// Rotating bearer tokens: the upstream accepts only the newest.
struct Rotating(Arc<AtomicUsize>);

impl Auth for Rotating {
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()> {
        let token = format!("Bearer t{}", self.0.load(Ordering::SeqCst));
        Box::pin(async move {
            headers.insert("authorization", token.parse().unwrap());
            Ok(())
        })
    }
    fn refresh(&self) -> AuthFuture<'_, ()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn a_401_refreshes_auth_once_and_redoes_the_attempt() {
    let current = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(1));
    let a = accepted.clone();
    let up = Upstream::start(move |seen| {
        let want = format!("Bearer t{}", a.load(Ordering::SeqCst));
        if seen.header("authorization") == Some(want.as_str()) {
            Reply::json(json!({"id": 1}))
        } else {
            Reply::status(401, "expired")
        }
    })
    .await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth(Rotating(current.clone()))
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    api.secure()
        .await
        .expect("refreshed and redone, though the stitch has no retry");
    assert_eq!(up.hits(), 2);
    assert_eq!(current.load(Ordering::SeqCst), 1);
    // Still rejected after one refresh: the 401 is returned, no loop.
    accepted.store(99, Ordering::SeqCst);
    assert_eq!(
        api.secure().await.unwrap_err().status().map(|s| s.as_u16()),
        Some(401)
    );
    assert_eq!(up.hits(), 4);
}
