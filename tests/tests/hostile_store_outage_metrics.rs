//! Hostile-use probe: issue 10 §6 "a store failure or timeout makes the cache fall back to in-process
//! behaviour ... traced and counted, never failing the call", counted as the README names it.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::time::Duration;
use stitch::Runtime;
use stitch_tests::fleet::Redis;
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/users/{id}", cache = "1m")]
    async fn user(
        &self,
        id: u64,
        #[query("api_key")] key: &str,
    ) -> stitch::Result<serde_json::Value>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_counted_and_never_fails_the_call() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    let mut redis = Redis::start(&[]);
    let up = Upstream::start(|_| Reply::json(serde_json::json!({"n": 1}))).await;
    let store = stitch::store::RedisStore::connect(&redis.url())
        .await
        .unwrap();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .store_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    api.user(1, "METRICSECRET1").await.unwrap();
    redis.kill();
    for id in 2..6 {
        api.user(id, "METRICSECRET1").await.unwrap();
    }
    let all: Vec<(String, u64)> = stitch_tests::recorded::metrics(&snapshotter)
        .into_iter()
        .map(|(id, value)| match value {
            DebugValue::Counter(n) => (id, n),
            _ => (id, 0),
        })
        .collect();
    println!("{all:#?}");
    assert!(
        all.iter().all(|(id, _)| !id.contains("METRICSECRET1")),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|(id, n)| id.starts_with("stitch_degraded_total")
                && id.contains("decision=fleet_cache_local")
                && *n > 0),
        "the fallback is not counted as `fleet_cache_local`: {all:#?}"
    );
}
