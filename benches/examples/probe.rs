//! Instruction-count probe for the per-call overhead: N calls of one mode (`stitch` or `hand`)
//! against an in-process upstream on a current-thread runtime. Under callgrind the counts are
//! deterministic, unlike wall time on a shared VM; the per-call cost is the difference between
//! two run lengths (which cancels start-up):
//!
//! ```sh
//! cargo build --release -p stitch-benches --example probe
//! for m in stitch hand; do for n in 500 1500; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$m.$n target/release/examples/probe $m $n
//! done; done   # per call = (Ir at 1500 - Ir at 500) / 1000
//! ```
//!
//! Modes `bearer`, `apikey` and `apiquery` are `stitch` with a fixed bearer token, API key header or
//! API key query parameter, for the
//! per-call cost of a fixed-credential strategy.
//!
//! Mode `stitch-metrics` is `stitch` with a `metrics` recorder installed: metrics-util's
//! `Registry` with atomic storage, the core an exporter such as metrics-exporter-prometheus
//! records into, for the cost of the per-call metrics when something records them.

use serde::Deserialize;
#[derive(Debug, Deserialize, PartialEq)]
#[allow(dead_code)]
struct User {
    id: u64,
    name: String,
    email: String,
    tags: Vec<String>,
}
#[derive(Deserialize)]
struct Envelope {
    data: User,
}
#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Bench {
    #[stitch(get, path = "/users/{id}", pick = "data")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}
#[stitch::seam(base_url = "http://placeholder.invalid", auth = "bearer")]
trait BearerBench {
    #[stitch(get, path = "/users/{id}", pick = "data")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}
#[stitch::seam(base_url = "http://placeholder.invalid", auth = "key")]
trait KeyBench {
    #[stitch(get, path = "/users/{id}", pick = "data")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}
#[stitch::seam(base_url = "http://placeholder.invalid", auth = "query")]
trait QueryBench {
    #[stitch(get, path = "/users/{id}", pick = "data")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}
#[path = "../benches/support/recorder.rs"]
mod recorder;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    if mode == "stitch-metrics" {
        recorder::AtomicRecorder::install();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use axum::routing::get;
        let app = axum::Router::new().route("/users/{id}", get(|| async {
            axum::Json(serde_json::json!({"data": {"id": 7, "name": "Ada", "email": "ada@example.com", "tags": ["a", "b"]}}))
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = format!("http://{addr}");
        let srt = stitch::Runtime::builder()
            .base_url(base.clone())
            .auth_strategy("bearer", stitch::auth::Bearer::new("t-123"))
            .auth_strategy("key", stitch::auth::ApiKey::header("x-api-key", "k-123"))
            .auth_strategy("query", stitch::auth::ApiKey::query("api_key", "k-123"))
            .build()
            .unwrap();
        let api = BenchClient::new(&srt).unwrap();
        let bearer = BearerBenchClient::new(&srt).unwrap();
        let key = KeyBenchClient::new(&srt).unwrap();
        let query = QueryBenchClient::new(&srt).unwrap();
        if std::env::var_os("PROBE_SIZE").is_some() {
            // The call's future, as the caller holds it (every layer of the pipeline moves it).
            eprintln!("call future {} B", std::mem::size_of_val(&api.user(7)));
        }
        let http = reqwest::Client::builder().user_agent("handwr/0.1.0").build().unwrap();
        for i in 0..n {
            if mode == "bearer" {
                bearer.user(i).await.unwrap();
            } else if mode == "apikey" {
                key.user(i).await.unwrap();
            } else if mode == "apiquery" {
                query.user(i).await.unwrap();
            } else if mode.starts_with("stitch") {
                api.user(i).await.unwrap();
            } else if mode == "hand" {
                let bytes = http.get(format!("{base}/users/{i}")).send().await.unwrap().bytes().await.unwrap();
                let e: Envelope = serde_json::from_slice(&bytes).unwrap();
                std::hint::black_box(e.data);
            }
        }
    });
}
