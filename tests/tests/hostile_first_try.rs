//! Hostile-use probes: what a user tries first with the README in hand.

use serde_json::json;
use std::time::Duration;
use stitch::Runtime;
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: u64) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/cached/{id}", cache = "1m")]
    async fn cached(&self, id: u64) -> stitch::Result<serde_json::Value>;

    #[stitch(get, path = "/paced/{id}", throttle(rate = "100/s", concurrency = 2))]
    async fn paced(&self, id: u64) -> stitch::Result<serde_json::Value>;
}

fn upstream_in(rt: &tokio::runtime::Runtime) -> Upstream {
    rt.block_on(Upstream::start(|seen| {
        Reply::json(json!({"path": seen.path}))
    }))
}

/// A runtime built in a synchronous `main` (or a `static`), before any tokio runtime exists,
/// then used from one.
#[test]
fn a_runtime_built_outside_tokio() {
    let tokio_rt = tokio::runtime::Runtime::new().unwrap();
    let up = upstream_in(&tokio_rt);
    for store in [false, true] {
        let built = std::panic::catch_unwind(|| {
            let mut b = Runtime::builder().base_url(up.url());
            if store {
                b = b.store(stitch::store::MemoryStore::new(100));
            }
            b.build()
        });
        let runtime = match built {
            Ok(r) => r.unwrap(),
            Err(_) => panic!("build() panicked outside tokio (store: {store})"),
        };
        let api = ApiClient::new(&runtime).unwrap();
        tokio_rt.block_on(async {
            api.cached(1).await.unwrap();
            api.paced(1).await.unwrap();
        });
    }
}

/// README: fleet concurrency leases are "released when it ends". One stitch runtime used from
/// tokio runtimes one after the other (two `#[tokio::test]`s sharing a `static` runtime, or the
/// process-wide runtime of free stitches): a lease released by a task spawned on a tokio
/// runtime that is gone by then is held until its TTL (10 s).
#[test]
fn one_stitch_runtime_across_tokio_runtimes() {
    let keep = tokio::runtime::Runtime::new().unwrap();
    let up = upstream_in(&keep);
    for store in [false, true] {
        let mut b = Runtime::builder().base_url(up.url());
        if store {
            b = b.store(stitch::store::MemoryStore::new(100));
        }
        let runtime = b.build().unwrap();
        let api = ApiClient::new(&runtime).unwrap();
        for round in 0..3u64 {
            let tokio_rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio_rt.block_on(async {
                for which in ["user", "cached", "paced"] {
                    let started = std::time::Instant::now();
                    let outcome = tokio::time::timeout(Duration::from_secs(40), async {
                        match which {
                            "user" => api.user(round).await,
                            "cached" => api.cached(round).await,
                            _ => api.paced(round).await,
                        }
                    })
                    .await;
                    let took = started.elapsed();
                    match outcome {
                        Err(_) => {
                            panic!("store {store}, round {round}, {which}: hung for {took:?}")
                        }
                        Ok(Err(e)) => {
                            panic!("store {store}, round {round}, {which}: {e} after {took:?}")
                        }
                        Ok(Ok(_)) => assert!(
                            took < Duration::from_secs(2),
                            "store {store}, round {round}, {which}: took {took:?}"
                        ),
                    }
                }
            });
            drop(tokio_rt);
        }
    }
}

#[stitch::stitch(get, url = "http://127.0.0.1:1/free/{id}", cache = "1m")]
async fn free_cached(id: u64, #[query] q: &str) -> stitch::Result<serde_json::Value>;

/// Free stitches and seam calls can be spawned (their futures are `Send + 'static` once their
/// borrowed arguments are owned by the task).
#[test]
fn futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let rt = Runtime::builder().build().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let q = String::from("x");
    let f = free_cached(1, &q);
    send(&f);
    let g = api.cached(1);
    send(&g);
    drop((f, g));
}

/// README: "a default header fails `build()` with `Error::Config`" when its value is not visible
/// ASCII, spaces or tabs.
#[test]
fn bad_default_headers_fail_build() {
    for (name, value) in [
        ("x-a", "line\nbreak"),
        ("x-a", "caf\u{e9}"),
        ("x-a", "nul\0"),
        ("bad name", "v"),
        ("", "v"),
        ("authorization", "Bearer \r\nx"),
    ] {
        match Runtime::builder().default_header(name, value).build() {
            Err(stitch::Error::Config { reason, .. }) => {
                assert!(!reason.contains("Bearer"), "{reason}");
            }
            Err(e) => panic!("{name:?}={value:?}: {e}"),
            Ok(_) => panic!("{name:?}={value:?}: built"),
        }
    }
}
