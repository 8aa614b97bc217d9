//! An external referee for pacing: nginx's `limit_req` at the declared rate (`burst=1 nodelay`,
//! 429 past it) in front of the upstream. Saturated calls for 10 seconds must get zero rejections
//! while achieving at least 95% of the declared rate.

use std::time::Duration;
use stitch::Runtime;
use stitch_tests::{saturate, Nginx, Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Metered {
    #[stitch(get, path = "/metered", throttle(rate = "20/s", concurrency = 4))]
    async fn call(&self) -> stitch::Result<()>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_calls_are_never_rejected_and_reach_the_declared_rate() {
    let up = Upstream::start(|_| Reply::status(200, "")).await;
    let nginx = Nginx::rate_limited(&up.url(), 20).expect("start nginx");
    let rt = Runtime::builder().base_url(nginx.url()).build().unwrap();
    let api = MeteredClient::new(&rt).unwrap();

    let api = api.clone();
    let run = saturate(16, Duration::from_secs(10), move || {
        let api = api.clone();
        async move { api.call().await }
    })
    .await;
    let (ok, rejected, achieved) = (run.accepted, run.rejected, run.rate());
    println!(
        "referee: {ok} accepted, {rejected} rejected in {:.2}s = {achieved:.2}/s (declared 20/s)",
        run.seconds
    );
    assert_eq!(
        rejected, 0,
        "nginx rejected {rejected} requests: pacing exceeded the declared rate"
    );
    assert!(
        achieved >= 0.95 * 20.0,
        "achieved {achieved:.2}/s, below 95% of 20/s"
    );
    assert_eq!(up.hits() as u32, ok);
}
