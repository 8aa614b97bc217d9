//! The `stitch` tracing span of every call records what happened: cache outcome, throttle wait,
//! attempts and backoff, status. Its own test binary, with one test: tracing caches per-callsite
//! interest process-wide, so a span first seen by a parallel test without a subscriber would be
//! disabled here.

use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stitch::Runtime;
use stitch_tests::{Reply, Upstream};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
#[allow(dead_code)]
struct Answer {
    n: usize,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/cached", cache = "1m")]
    async fn cached(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/plain")]
    async fn plain(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/paced", throttle = "5/s")]
    async fn paced(&self) -> stitch::Result<Answer>;

    #[stitch(
        get,
        path = "/flaky",
        retry(attempts = 3, backoff = "fixed", base = "20ms")
    )]
    async fn flaky(&self) -> stitch::Result<Answer>;

    #[stitch(get, path = "/missing")]
    async fn missing(&self) -> stitch::Result<Answer>;
}

/// Every value each field of `stitch` spans took, in order.
#[derive(Clone, Default)]
struct Fields(Arc<Mutex<Vec<(String, String)>>>);

struct Visitor<'a>(&'a Mutex<Vec<(String, String)>>);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .lock()
            .unwrap()
            .push((field.name().into(), value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0
            .lock()
            .unwrap()
            .push((field.name().into(), value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0
            .lock()
            .unwrap()
            .push((field.name().into(), format!("{value:.0}")));
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for Fields {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        attrs.record(&mut Visitor(&self.0));
    }
    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: Context<'_, S>,
    ) {
        values.record(&mut Visitor(&self.0));
    }
}

impl Fields {
    /// Every recorded field since the last call, by name.
    fn drain(&self) -> HashMap<String, Vec<String>> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in self.0.lock().unwrap().drain(..) {
            map.entry(name).or_default().push(value);
        }
        map
    }
}

#[tokio::test]
async fn spans_record_cache_throttle_attempts_and_status() {
    let fields = Fields::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(fields.clone()));
    let flaky = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |seen| {
        if seen.path == "/missing" {
            Reply::status(404, "no")
        } else if seen.path == "/flaky" && flaky.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::status(503, "busy")
        } else {
            Reply::json(json!({"n": 1})).after(Duration::from_millis(50))
        }
    })
    .await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();

    let (a, b) = tokio::join!(api.cached(), api.cached());
    a.unwrap();
    b.unwrap();
    api.cached().await.unwrap();
    api.plain().await.unwrap();
    let mut cache = fields.drain().remove("cache").unwrap_or_default();
    cache[..2].sort();
    assert_eq!(cache, ["coalesced", "miss", "hit", "bypass"]);

    api.paced().await.unwrap();
    api.paced().await.unwrap();
    let waits: Vec<u64> = fields.drain()["throttle_wait_ms"]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(waits.len(), 2);
    assert!(
        waits[1] >= 100,
        "the second call waited for its grant: {waits:?}"
    );

    api.flaky().await.unwrap();
    let recorded = fields.drain();
    assert_eq!(recorded["attempts"], ["1", "2", "3"]);
    assert_eq!(recorded["backoff_ms"], ["20", "20"]);
    assert_eq!(recorded["status"], ["503", "503", "200"]);
    assert_eq!(recorded["http.response.status_code"], ["503", "503", "200"]);
    assert!(!recorded.contains_key("error.type"), "the call succeeded");

    // OpenTelemetry's HTTP client fields, and never a full URL.
    api.missing().await.unwrap_err();
    let recorded = fields.drain();
    assert_eq!(recorded["http.request.method"], ["GET"]);
    assert_eq!(recorded["url.template"].len(), 1);
    assert_eq!(recorded["server.address"], ["127.0.0.1"]);
    assert_eq!(
        recorded["server.port"],
        [up.url().rsplit(':').next().unwrap()]
    );
    assert_eq!(recorded["http.response.status_code"], ["404"]);
    assert_eq!(recorded["error.type"], ["404"]);
    assert!(
        recorded.values().flatten().all(|v| !v.contains("://")),
        "no URL in the span: {recorded:?}"
    );
}
