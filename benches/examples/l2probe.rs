//! Instruction-count probe for an L2 hit through a generated call (issue 10's L2-hit figure): N
//! calls cycling over 256 warmed keys with `max_entries = 1` in-process, so every call claims the
//! shared entry on a real `redis-server` (started here on a free loopback port), on a
//! current-thread runtime. Under callgrind the per-call cost is the difference between two run
//! lengths (which cancels start-up; leave out the one-time `quanta` calibration rows,
//! `OnceCell::initialize` and `clock_gettime`, which vary from run to run):
//!
//! ```sh
//! cargo build --release -p stitch-benches --example l2probe
//! for m in call claim; do for n in 500 1500; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$m.$n target/release/examples/l2probe $m $n
//! done; done   # per call = (Ir at 1500 - Ir at 500) / 1000
//! ```
//!
//! Mode `call` is the generated call; mode `claim` is the reference the call is held to, as in
//! `benches/fleet_cache.rs`: the driver's own `fill_claim` of the same entries, then the record
//! decode and `serde_json` of the same bytes. The difference is the call pipeline's own cost.
//! Modes `get` and `pipe` are the claim's references: a raw redis-rs `GET` of the value key, and
//! the claim's three commands pipelined by hand, each with the same decode (measured: 32.2 K and
//! 42.2 K instructions per call; the driver's claim 39.5 K).

use std::time::Duration;
use stitch::store::RedisStore;
use stitch::Runtime;
use stitch_tests::fleet::Redis;

#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Bench {
    /// One entry in-process: cycling over more keys makes every call an L1 miss.
    #[stitch(get, path = "/users/{id}", cache(ttl = "10m", max_entries = 1))]
    async fn user(&self, id: u64) -> stitch::Result<serde_json::Value>;
}

/// Warmed keys cycled over.
const KEYS: u64 = 256;

/// A loopback upstream: the same body as `benches/fleet_cache.rs` serves for `/users/..`.
async fn upstream() -> String {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| async move {
        axum::Json(serde_json::json!({
            "id": uri.path(), "name": "Grace Hopper", "tags": ["admiral", "cobol", "compiler"],
            "bio": "x".repeat(200),
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[path = "../benches/support/l2_hit.rs"]
mod l2_hit;
use l2_hit::claim_and_decode;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = Redis::start(&[]);
    rt.block_on(async {
        let base = upstream().await;
        let rt = Runtime::builder()
            .base_url(&base)
            .store(RedisStore::connect(&redis.url()).await.unwrap())
            .principal_key([3; 32])
            .build()
            .unwrap();
        let api = BenchClient::new(&rt).unwrap();
        for id in 0..KEYS {
            api.user(id).await.unwrap();
        }
        // The fills complete behind the calls.
        tokio::time::sleep(Duration::from_millis(300)).await;
        match mode.as_str() {
            "call" => {
                for i in 0..n {
                    std::hint::black_box(api.user(i % KEYS).await.unwrap());
                }
            }
            "claim" => {
                let fills = l2_hit::fill_keys(&redis);
                assert_eq!(fills.len() as u64, KEYS, "one shared entry per warmed key");
                let store = RedisStore::connect(&redis.url()).await.unwrap();
                for i in 0..n {
                    let keys = &fills[(i % KEYS) as usize];
                    std::hint::black_box(claim_and_decode(&store, keys).await);
                }
            }
            "get" | "pipe" => {
                // References for the claim: a raw `GET` of the value key, or the claim's three
                // commands (`PTTL`, `SET .. NX PX .. GET`, `GET` of the generation) pipelined
                // by hand, each with the same decode.
                let fills = l2_hit::fill_keys(&redis);
                let client = redis::Client::open(redis.url()).unwrap();
                let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
                for i in 0..n {
                    let keys = &fills[(i % KEYS) as usize];
                    let mut c = conn.clone();
                    let bytes: Vec<u8> = if mode == "get" {
                        redis::cmd("GET")
                            .arg(&keys[0])
                            .query_async(&mut c)
                            .await
                            .unwrap()
                    } else {
                        let mut pipe = redis::pipe();
                        pipe.cmd("PTTL").arg(&keys[0]);
                        pipe.cmd("SET")
                            .arg(&keys[0])
                            .arg("\u{ff}\u{fe}stitch:lease:0123456789abcdef0123456789abcdef")
                            .arg("NX")
                            .arg("PX")
                            .arg(3000)
                            .arg("GET");
                        pipe.cmd("GET").arg(&keys[2]);
                        let (_, v, _): (i64, Vec<u8>, Option<u64>) =
                            pipe.query_async(&mut c).await.unwrap();
                        v
                    };
                    std::hint::black_box(l2_hit::decode(bytes::Bytes::from(bytes)));
                }
            }
            other => panic!("mode `call`, `claim`, `get` or `pipe`, not `{other}`"),
        }
    });
}
