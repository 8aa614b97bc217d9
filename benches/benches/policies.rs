//! Policy hot paths, each next to the crate a user would otherwise pick, measured side by side in
//! one run: a cache hit through a full generated call vs a raw moka `get`; an uncontended throttle
//! acquire + release vs governor's `check()`; throttle throughput with 1,000 contending tasks.
//!
//! Run: `cargo bench -p stitch-benches --bench policies`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde::Deserialize;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use stitch::__private::{Acquired, Endpoint, Limiters, Pool, ThrottleSpec};

#[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
#[allow(dead_code)] // read through black_box
struct User {
    id: u64,
    name: String,
    email: String,
    tags: Vec<String>,
}

#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Bench {
    #[stitch(get, path = "/users/{id}", pick = "data", cache = "1h")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn upstream() -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/users/{id}",
        get(|| async {
            axum::Json(serde_json::json!({"data": {"id": 7, "name": "Ada", "email": "ada@example.com", "tags": ["a", "b"]}}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn cache_hit(c: &mut Criterion) {
    let rt = runtime();
    let url = rt.block_on(upstream());
    let stitch_rt = stitch::Runtime::builder().base_url(url).build().unwrap();
    let api = BenchClient::new(&stitch_rt).unwrap();
    rt.block_on(api.user(7)).unwrap();

    let moka: moka::sync::Cache<[u8; 32], Arc<User>> = moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(3600))
        .build();
    let key = *blake3::hash(b"users/7").as_bytes();
    moka.insert(key, Arc::new(rt.block_on(api.user(7)).unwrap()));

    let mut group = c.benchmark_group("cache_hit");
    group.bench_function("stitch_generated_call_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(api.user(black_box(7)).await.unwrap()) })
    });
    group.bench_function("moka_get_prebuilt_key", |b| {
        b.iter(|| black_box((*moka.get(black_box(&key)).unwrap()).clone()))
    });
    group.finish();
}

fn throttle_uncontended(c: &mut Criterion) {
    static EP: Endpoint = Endpoint::get("bench::throttle", "/", &["/"])
        .throttles(&[ThrottleSpec::new(Pool::Stitch).rate(1_000_000_000, Duration::from_secs(1))]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let limiters = Limiters::new(stitch::throttle::PacingClock::Tsc);
    let governor = governor::RateLimiter::direct(governor::Quota::per_second(NonZeroU32::MAX));

    let mut group = c.benchmark_group("throttle_uncontended");
    group.bench_function("stitch_acquire_release", |b| {
        b.iter(|| match limiters.try_acquire(&EP, "h:1", None).unwrap() {
            Acquired::Now(permit) => drop(black_box(permit)),
            _ => panic!("the uncontended path waited"),
        })
    });
    group.bench_function("governor_check", |b| {
        b.iter(|| black_box(governor.check()).is_ok())
    });
    // Context for the figures above: one read of each clock.
    let tsc = quanta::Clock::new();
    group.bench_function("clock_read_quanta", |b| b.iter(|| black_box(tsc.raw())));
    group.bench_function("clock_read_std_instant", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    group.finish();
}

fn throttle_contended(c: &mut Criterion) {
    static EP: Endpoint = Endpoint::get("bench::contended", "/", &["/"])
        .throttles(&[ThrottleSpec::new(Pool::Stitch).concurrency(8)]);
    let rt = runtime();
    let mut group = c.benchmark_group("throttle_contended");
    group.sample_size(20);
    group.throughput(criterion::Throughput::Elements(1000 * 10));
    group.bench_function("1000_tasks_x_10_acquires_concurrency_8", |b| {
        b.to_async(&rt).iter_batched(
            || Arc::new(Limiters::new(stitch::throttle::PacingClock::Tsc)),
            |limiters| async move {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..1000 {
                    let l = limiters.clone();
                    tasks.spawn(async move {
                        for _ in 0..10 {
                            let permit = l.acquire(&EP, "h:1", None).await.unwrap();
                            tokio::task::yield_now().await;
                            drop(permit);
                        }
                    });
                }
                while tasks.join_next().await.is_some() {}
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, cache_hit, throttle_uncontended, throttle_contended);
criterion_main!(benches);
