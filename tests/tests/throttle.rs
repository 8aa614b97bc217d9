//! Throttles against a real loopback upstream: concurrency caps, permits released however a call
//! ends, budget spent only by real requests, `max_wait`, and delegate mode.

use serde_json::json;
use std::time::Duration;
use stitch::{Error, Runtime};
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/capped", throttle(concurrency = 4))]
    async fn capped(&self) -> stitch::Result<()>;

    #[stitch(
        get,
        path = "/one/{mode}",
        throttle(concurrency = 1),
        timeout = "300ms"
    )]
    async fn one(&self, mode: &str) -> stitch::Result<()>;

    #[stitch(
        get,
        path = "/cached",
        cache = "1m",
        throttle(rate = "1/s", max_wait = "100ms")
    )]
    async fn cached(&self) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/paced", throttle(rate = "1/s", max_wait = "200ms"))]
    async fn paced(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/budget", throttle = "1/s", timeout = "300ms")]
    async fn budget(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/limited", throttle(delegate))]
    async fn limited(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/busy", throttle(delegate, on = [503]))]
    async fn busy(&self) -> stitch::Result<()>;
}

fn client(up: &Upstream) -> ApiClient {
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    ApiClient::new(&rt).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_concurrency_never_exceeds_the_cap() {
    let up = Upstream::start(|_| Reply::status(200, "").after(Duration::from_millis(30))).await;
    let api = client(&up);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let api = api.clone();
        tasks.spawn(async move { api.capped().await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(up.hits(), 100);
    let peak = up.peak_in_flight();
    assert!(peak <= 4, "peak {peak} above the cap");
    assert_eq!(peak, 4, "the cap is reached under load");
}

async fn modal_upstream() -> Upstream {
    Upstream::start(|seen| match seen.path.as_str() {
        "/one/fail" => Reply::status(503, "down"),
        "/one/slow" => Reply::status(200, "").after(Duration::from_secs(5)),
        _ => Reply::status(200, ""),
    })
    .await
}

#[tokio::test]
async fn permits_are_released_on_error_timeout_and_cancellation() {
    let up = modal_upstream().await;
    let api = client(&up);
    assert!(matches!(api.one("fail").await, Err(Error::Status { .. })));
    api.one("ok").await.expect("released after an error");
    assert!(api.one("slow").await.unwrap_err().is_timeout());
    api.one("ok").await.expect("released after a timeout");
    let dropped = {
        let api = api.clone();
        tokio::spawn(async move { api.one("slow").await })
    };
    while up.hits() < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    dropped.abort();
    let _ = dropped.await;
    api.one("ok").await.expect("released after cancellation");
}

#[tokio::test]
async fn cache_hits_and_coalesced_followers_spend_no_budget() {
    let up = Upstream::start(|_| Reply::json(json!({"ok": true})).after(Duration::from_millis(50)))
        .await;
    let api = client(&up);
    // Ten concurrent cold calls: one request, so one grant; the rest would have to wait 1 s and
    // fail against `max_wait = 100ms` if they spent budget.
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.cached().await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    for _ in 0..10 {
        api.cached().await.unwrap();
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn max_wait_and_the_call_budget_bound_the_wait() {
    let up = Upstream::start(|_| Reply::status(200, "")).await;
    let api = client(&up);
    api.paced().await.unwrap();
    match api.paced().await {
        Err(Error::Throttled {
            would_wait: Some(w),
            limit,
            ..
        }) => {
            assert!(
                w > Duration::from_millis(800) && w <= Duration::from_secs(1),
                "{w:?}"
            );
            assert_eq!(limit, Duration::from_millis(200));
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    api.budget().await.unwrap();
    match api.budget().await {
        Err(Error::Throttled {
            would_wait: Some(w),
            limit,
            ..
        }) => {
            assert!(w > Duration::from_millis(500), "{w:?}");
            assert!(
                limit <= Duration::from_millis(300),
                "bounded by the remaining timeout: {limit:?}"
            );
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn delegate_mode_reports_the_upstreams_limit_with_retry_after() {
    let date = httpdate_in(Duration::from_secs(30));
    let up = Upstream::start(move |seen| match seen.path.as_str() {
        "/limited" if seen.query.as_deref() == Some("date") => {
            Reply::status(429, "slow down").header("retry-after", &date)
        }
        "/limited" => Reply::status(429, "slow down").header("retry-after", "7"),
        _ => Reply::status(503, "busy"),
    })
    .await;
    let api = client(&up);
    match api.limited().await {
        Err(Error::RateLimited {
            status,
            retry_after,
            ..
        }) => {
            assert_eq!(status.as_u16(), 429);
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    match api.busy().await {
        Err(Error::RateLimited {
            status,
            retry_after,
            ..
        }) => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(retry_after, None);
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // Delegate mode does not pace: calls go out back to back.
    for _ in 0..5 {
        let _ = api.limited().await;
    }
    assert_eq!(up.hits(), 7);

    #[stitch::seam(base_url = "http://declared.invalid")]
    #[allow(dead_code)] // only its client is used
    trait Dated {
        #[stitch(get, path = "/limited?date", throttle(delegate))]
        async fn limited(&self) -> stitch::Result<()>;
    }
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    match DatedClient::new(&rt).unwrap().limited().await {
        Err(Error::RateLimited {
            retry_after: Some(d),
            ..
        }) => {
            assert!(
                d > Duration::from_secs(25) && d <= Duration::from_secs(30),
                "{d:?}"
            );
        }
        other => panic!("expected RateLimited with a date, got {other:?}"),
    }
}

fn httpdate_in(d: Duration) -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now() + d)
}
