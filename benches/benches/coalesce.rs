//! Coalescing under a stampede: 10,000 concurrent calls on a cold key, next to one single call's
//! latency, measured alternately in one run on fresh clients (cold caches). Prints the upstream
//! request count of every stampede (it must be 1) and the medians.
//!
//! Run: `cargo bench -p stitch-benches --bench coalesce`

use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
#[allow(dead_code)]
struct User {
    id: u64,
    name: String,
}

#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Bench {
    #[stitch(get, path = "/users/{id}", cache = "1h")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

const ROUNDS: usize = 11;
const CALLERS: usize = 10_000;

async fn upstream(delay: Duration, hits: Arc<AtomicUsize>) -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/users/{id}",
        get(move || {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                axum::Json(serde_json::json!({"id": 7, "name": "Ada"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// `CALLERS` concurrent calls of one key, each in its own task; the wall time until all are done.
async fn concurrent_calls(api: &BenchClient) -> Duration {
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let api = api.clone();
        tasks.spawn(async move { api.user(1_000_000).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn scenario(delay: Duration) {
    let hits = Arc::new(AtomicUsize::new(0));
    let url = upstream(delay, hits.clone()).await;
    let client = || {
        let rt = stitch::Runtime::builder().base_url(&url).build().unwrap();
        BenchClient::new(&rt).unwrap()
    };
    // Warm the connection pool path and the allocator once.
    client().user(1).await.unwrap();
    let (mut single, mut stampede, mut requests, mut warm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let api = client();
        let t = Instant::now();
        api.user(round as u64).await.unwrap();
        single.push(t.elapsed());

        let api = client();
        let before = hits.load(Ordering::SeqCst);
        stampede.push(concurrent_calls(&api).await);
        requests.push(hits.load(Ordering::SeqCst) - before);

        // The same 10,000 calls again, now all cache hits: what the harness (spawn + join) and
        // the call path cost without any coalescing.
        warm.push(concurrent_calls(&api).await);
    }
    let (s, m, w) = (median(single), median(stampede), median(warm));
    println!(
        "upstream delay {:>3} ms | single call {:>7.2} ms | {CALLERS} concurrent cold calls {:>7.2} ms (goal <= 1.5x + 10 ms = {:.2} ms) | same {CALLERS} calls, all hits {:>7.2} ms | upstream requests per stampede: {:?}",
        delay.as_millis(),
        s.as_secs_f64() * 1e3,
        m.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1.5e3 + 10.0,
        w.as_secs_f64() * 1e3,
        requests
    );
    assert!(
        requests.iter().all(|&n| n == 1),
        "a stampede made more than one request"
    );
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
        for delay in [Duration::ZERO, Duration::from_millis(50)] {
            scenario(delay).await;
        }
    });
}
