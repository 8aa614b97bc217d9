//! Per-call overhead of a generated stitch against the same request written by hand.
//!
//! One in-process axum upstream on loopback answers `GET /users/{id}` with a small JSON body.
//! Group `overhead` measures a full call both ways, in the same run, with the same sample
//! settings:
//!
//! - `stitch`: a `#[stitch::seam]` client (`pick = "data"`) on a `stitch::Runtime`;
//! - `hand`: `reqwest` + `serde_json` written by hand, sharing no code with stitch, on a reqwest
//!   client built the way the runtime builds its own (default settings, a user agent of the same
//!   length).
//!
//! Every sample of either bench alternates calls of both clients (`iter_custom`) and times each
//! call; a bench reports its own side to criterion. The per-sample pairs are also written to
//! `target/criterion/overhead/paired.json`: their ratios do not suffer from the load drifting
//! between the two benches' 20 s runs, which on a small shared VM is larger than the effect
//! being measured.
//!
//! Group `non_network` measures the CPU-only part of the hand-written call (URL formatting and
//! JSON decoding) to give the 3% budget a scale; stitch's own non-network steps are crate-private
//! and cannot be isolated through its public API.
//!
//! ```text
//! cargo bench -p stitch-benches --bench overhead
//! cargo run -p stitch-benches --bin ratio      # medians and the stitch/hand ratio
//! ```
//!
//! With `STITCH_BENCH_RECORDER=1` a `metrics` recorder (an exporter's atomic registry) is
//! installed first, so the `stitch` side also pays for recording its per-call metrics.

use axum::extract::Path;
use axum::routing::get;
use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The decoded payload, shared by both sides (it is the user's type, not stitch code).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    tags: Vec<String>,
}

#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Bench {
    #[stitch(get, path = "/users/{id}", pick = "data")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

/// The same call written by hand: no stitch code involved.
mod hand {
    use super::User;
    use serde::Deserialize;

    pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

    #[derive(Deserialize)]
    pub(crate) struct Envelope {
        pub(crate) data: User,
    }

    pub(crate) async fn user(
        client: &reqwest::Client,
        base: &str,
        id: u64,
    ) -> Result<User, BoxError> {
        let bytes = client
            .get(format!("{base}/users/{id}"))
            .send()
            .await?
            .bytes()
            .await?;
        let envelope: Envelope = serde_json::from_slice(&bytes)?;
        Ok(envelope.data)
    }
}

/// Serves `GET /users/{id}` on `127.0.0.1:0`; returns `http://127.0.0.1:PORT`.
async fn start_upstream() -> String {
    let app = axum::Router::new().route(
        "/users/{id}",
        get(|Path(id): Path<u64>| async move {
            axum::Json(serde_json::json!({
                "data": { "id": id, "name": "Ada", "email": "ada@example.com", "tags": ["a", "b"] }
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    format!("http://{addr}")
}

fn expected_user() -> User {
    User {
        id: 7,
        name: "Ada".into(),
        email: "ada@example.com".into(),
        tags: vec!["a".into(), "b".into()],
    }
}

/// Samples per bench of group `overhead`.
const SAMPLES: usize = 100;

/// The time one criterion sample spent in each client: `iters` calls of each, alternated.
#[derive(Clone, Copy, Debug, Default)]
struct Pair {
    iters: u64,
    stitch: Duration,
    hand: Duration,
}

/// Runs `iters` calls of each client, alternating which goes first, and times every call.
///
/// Both benches of group `overhead` run this: each reports its own side's time to criterion, so
/// the two sides are always measured under the same conditions (same server load, same moment),
/// and the pair gives a per-sample ratio immune to drift between the two benches' runs.
async fn alternate(iters: u64, client: &BenchClient, http: &reqwest::Client, base: &str) -> Pair {
    async fn timed<T>(call: impl std::future::Future<Output = T>) -> Duration {
        let started = Instant::now();
        black_box(call.await);
        started.elapsed()
    }
    let stitch = || async { client.user(black_box(7)).await.expect("stitch call") };
    let hand = || async {
        hand::user(http, base, black_box(7))
            .await
            .expect("hand call")
    };
    let mut pair = Pair {
        iters,
        ..Pair::default()
    };
    for i in 0..iters {
        if i % 2 == 0 {
            pair.stitch += timed(stitch()).await;
            pair.hand += timed(hand()).await;
        } else {
            pair.hand += timed(hand()).await;
            pair.stitch += timed(stitch()).await;
        }
    }
    pair
}

#[path = "support/recorder.rs"]
mod recorder;

fn overhead(c: &mut Criterion) {
    if std::env::var_os("STITCH_BENCH_RECORDER").is_some_and(|v| v == "1") {
        recorder::AtomicRecorder::install();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let base = rt.block_on(start_upstream());

    let runtime = stitch::Runtime::builder()
        .base_url(base.clone())
        .build()
        .expect("stitch runtime");
    let client = BenchClient::new(&runtime).expect("stitch client");
    // What `RuntimeBuilder::build` does for its own client: defaults plus a user agent. The value
    // has the same length as the runtime's `stitch/0.1.0`, so both sides put the same bytes on
    // the wire.
    let http = reqwest::Client::builder()
        .user_agent("handwr/0.1.0")
        .build()
        .expect("reqwest client");

    // Both sides must do the same work: check they decode the same value (and open their
    // keep-alive connection before measuring).
    assert_eq!(
        rt.block_on(client.user(7)).expect("stitch call"),
        expected_user()
    );
    assert_eq!(
        rt.block_on(hand::user(&http, &base, 7)).expect("hand call"),
        expected_user()
    );

    let logs: [Mutex<Vec<Pair>>; 2] = Default::default();
    let mut group = c.benchmark_group("overhead");
    group
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(20));
    for (side, log) in ["stitch", "hand"].into_iter().zip(&logs) {
        group.bench_function(side, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (client, http, base) = (&client, &http, base.as_str());
                async move {
                    let pair = alternate(iters, client, http, base).await;
                    log.lock().expect("log").push(pair);
                    if side == "stitch" {
                        pair.stitch
                    } else {
                        pair.hand
                    }
                }
            })
        });
    }
    group.finish();

    // Criterion calls the routine for warm-up first: the measured samples are the last ones.
    let samples: Vec<Pair> = logs
        .iter()
        .flat_map(|log| {
            let log = log.lock().expect("log");
            let from = log.len().saturating_sub(SAMPLES);
            log[from..].to_vec()
        })
        .collect();
    if samples.len() == 2 * SAMPLES {
        write_paired(&samples);
    }
}

/// Writes the per-sample pairs next to criterion's estimates, for the `ratio` bin.
fn write_paired(samples: &[Pair]) {
    let rows: Vec<serde_json::Value> = samples
        .iter()
        .map(|p| {
            serde_json::json!({
                "iters": p.iters,
                "stitch_ns": p.stitch.as_nanos() as u64,
                "hand_ns": p.hand.as_nanos() as u64,
            })
        })
        .collect();
    let dir = target_dir().join("criterion").join("overhead");
    let path = dir.join("paired.json");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&serde_json::json!({ "samples": rows })).expect("json"),
        )
    });
    match written {
        Ok(()) => println!("paired samples written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// `$CARGO_TARGET_DIR`, or the workspace's `target` (the `ratio` bin looks in the same place).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn non_network(c: &mut Criterion) {
    let body = serde_json::to_vec(&serde_json::json!({
        "data": { "id": 7, "name": "Ada", "email": "ada@example.com", "tags": ["a", "b"] }
    }))
    .expect("body");
    let base = "http://127.0.0.1:40000";

    let mut group = c.benchmark_group("non_network");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("hand_url", |b| {
        b.iter(|| format!("{}/users/{}", black_box(base), black_box(7u64)))
    });
    group.bench_function("hand_decode", |b| {
        b.iter(|| {
            serde_json::from_slice::<hand::Envelope>(black_box(&body))
                .expect("decode")
                .data
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = overhead, non_network
}
criterion_main!(benches);
