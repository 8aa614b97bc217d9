//! An external referee for pacing: nginx's `limit_req` at the declared rate (`burst=1 nodelay`,
//! 429 past it) in front of the upstream. Saturated calls for 10 seconds must get zero rejections
//! while achieving at least 95% of the declared rate.

use std::time::{Duration, Instant};
use stitch::{Error, Runtime};
use stitch_tests::{Nginx, Reply, Upstream};

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

    let run_for = Duration::from_secs(10);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let api = api.clone();
        workers.spawn(async move {
            let (mut ok, mut rejected) = (0u32, 0u32);
            while started.elapsed() < run_for {
                match api.call().await {
                    Ok(()) => ok += 1,
                    Err(Error::Status { status, .. }) if status.as_u16() == 429 => {
                        println!("rejected at {:?}", started.elapsed());
                        rejected += 1
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            (ok, rejected)
        });
    }
    let (mut ok, mut rejected) = (0, 0);
    while let Some(r) = workers.join_next().await {
        let (o, r) = r.unwrap();
        ok += o;
        rejected += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let achieved = f64::from(ok) / elapsed;
    println!("referee: {ok} accepted, {rejected} rejected in {elapsed:.2}s = {achieved:.2}/s (declared 20/s)");
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
