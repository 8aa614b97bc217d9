//! Achieved vs declared rate against an external referee: nginx `limit_req` at the declared rate
//! (`burst=1 nodelay`, 429 past it) in front of a loopback upstream, saturated for 10 seconds.
//!
//! Run: `cargo bench -p stitch-tests --bench referee` (needs `nginx-light`).

use std::time::{Duration, Instant};
use stitch_tests::{Nginx, Reply, Upstream};

#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Metered {
    #[stitch(get, path = "/metered", throttle(rate = "50/s", concurrency = 4))]
    async fn call(&self) -> stitch::Result<()>;
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too; only `cargo bench` (which passes
    // `--bench`) should spend the time.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run it with `cargo bench`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let up = Upstream::start(|_| Reply::status(200, "")).await;
        let nginx = Nginx::rate_limited(&up.url(), 50).expect("nginx-light must be installed");
        let runtime = stitch::Runtime::builder().base_url(nginx.url()).build().unwrap();
        let api = MeteredClient::new(&runtime).unwrap();
        let run_for = Duration::from_secs(10);
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let api = api.clone();
            workers.spawn(async move {
                let (mut ok, mut rejected) = (0u32, 0u32);
                while started.elapsed() < run_for {
                    match api.call().await {
                        Ok(()) => ok += 1,
                        Err(e) if e.status().map(|s| s.as_u16()) == Some(429) => rejected += 1,
                        Err(e) => panic!("{e}"),
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
        let secs = started.elapsed().as_secs_f64();
        println!(
            "declared 50/s | accepted {ok} in {secs:.2} s = {:.2}/s ({:.1}% of declared) | rejected by nginx: {rejected}",
            f64::from(ok) / secs,
            f64::from(ok) / secs / 50.0 * 100.0
        );
    });
}
