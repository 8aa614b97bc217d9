//! Achieved vs declared rate against an external referee: nginx `limit_req` at the declared rate
//! (`burst=1 nodelay`, 429 past it) in front of a loopback upstream, saturated for 10 seconds.
//!
//! Run: `cargo bench -p stitch-tests --bench referee` (needs `nginx-light`).

use std::time::Duration;
use stitch_tests::{saturate, Nginx, Reply, Upstream};

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
        let run = saturate(32, Duration::from_secs(10), move || {
            let api = api.clone();
            async move { api.call().await }
        })
        .await;
        println!(
            "declared 50/s | accepted {} in {:.2} s = {:.2}/s ({:.1}% of declared) | rejected by nginx: {}",
            run.accepted,
            run.seconds,
            run.rate(),
            run.rate() / 50.0 * 100.0,
            run.rejected
        );
    });
}
