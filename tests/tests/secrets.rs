//! Secrets never leak through URLs: a credential-named query value (`api_key`, `token`, ...), a
//! `#[query(secret)]` value and base-URL userinfo never appear in an error's `Display`/`Debug`
//! (nor its source's), in any tracing output down to TRACE, in a shared store's keys or records,
//! or in `Debug` of runtimes and clients; yet they still separate cache entries.
//!
//! One test here installs a tracing subscriber: tracing caches per-callsite interest process-wide,
//! so that test also asserts it captured the events it looks into (it cannot pass by seeing none).

use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stitch::store::{MemoryStore, Store, StoreFuture};
use stitch::{Bytes, Error, Runtime};
use stitch_tests::traces::{everything, Capture};
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct Hit {
    n: usize,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/search", cache = "1m")]
    async fn search(
        &self,
        #[query] q: &str,
        #[query("api_key")] key: &str,
    ) -> stitch::Result<stitch::Response<Hit>>;

    #[stitch(
        get,
        path = "/fail",
        retry(attempts = 2, on = [503], backoff = "fixed", base = "10ms")
    )]
    async fn fail(&self, #[query] token: &str) -> stitch::Result<Hit>;

    #[stitch(get, path = "/fail/signed?sig=STATIC-SIG&v=1")]
    async fn fail_signed(&self, #[query] creds: Creds) -> stitch::Result<Hit>;

    #[stitch(get, path = "/marked", cache = "1m")]
    async fn marked(&self, #[query("q", secret)] q: &str) -> stitch::Result<Hit>;
}

/// Credentials as the fields of one `#[query]` struct.
#[derive(serde::Serialize)]
struct Creds {
    access_token: &'static str,
    page: u32,
}

/// Every key and value written to, and every key read from, a [`MemoryStore`].
#[derive(Clone, Default)]
struct Recording {
    inner: MemoryStore,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recording {
    fn saw(&self, secret: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .any(|b| b.windows(secret.len()).any(|w| w == secret.as_bytes()))
    }
    fn all(&self) -> String {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|b| String::from_utf8_lossy(b)).collect()
    }
}

impl Store for Recording {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.seen.lock().unwrap().push(key.as_bytes().to_vec());
        self.inner.get(key)
    }
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        let mut seen = self.seen.lock().unwrap();
        seen.push(key.as_bytes().to_vec());
        seen.push(value.to_vec());
        self.inner.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.seen.lock().unwrap().push(key.as_bytes().to_vec());
        self.inner.delete(key)
    }
}

async fn counting() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |seen| {
        if seen.path.starts_with("/fail") {
            return Reply::status(503, "busy");
        }
        Reply::json(json!({"n": n.fetch_add(1, Ordering::SeqCst) + 1}))
    })
    .await
}

#[tokio::test]
async fn secret_query_values_never_appear_in_errors_or_traces() {
    let (capture, _guard) = Capture::on_this_thread();
    let up = counting().await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();

    // A status error, after a retry (the `retrying` event prints the error).
    let error = api.fail("SECRET-TOKEN-1").await.unwrap_err();
    assert_eq!(up.hits(), 2, "retried once");
    assert_eq!(
        up.seen()[0].query.as_deref(),
        Some("token=SECRET-TOKEN-1"),
        "the secret is still sent"
    );
    let Error::Status { url, .. } = &error else {
        panic!("expected a status error, got {error:?}");
    };
    assert!(url.ends_with("/fail?token=REDACTED"), "{url}");
    let shown = everything(&error);
    assert!(!shown.contains("SECRET-TOKEN-1"), "{shown}");

    // A transport error: nothing listens on the port.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gone = Runtime::builder()
        .base_url(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let error = ApiClient::new(&gone)
        .unwrap()
        .search("rust", "SECRET-KEY-1")
        .await
        .unwrap_err();
    let Error::Transport { url, .. } = &error else {
        panic!("expected a transport error, got {error:?}");
    };
    assert!(url.contains("api_key=REDACTED"), "{url}");
    let shown = everything(&error);
    assert!(
        shown.contains("REDACTED"),
        "reqwest's error shows the redacted URL: {shown}"
    );
    assert!(!shown.contains("SECRET-KEY-1"), "{shown}");

    let traced = capture.text();
    assert!(
        traced.contains("retrying"),
        "the capture saw the events: {traced}"
    );
    assert!(traced.contains("REDACTED"), "{traced}");
    for secret in ["SECRET-TOKEN-1", "SECRET-KEY-1"] {
        assert!(!traced.contains(secret), "{secret} traced: {traced}");
    }
}

#[tokio::test]
async fn secret_query_values_never_reach_the_store_but_separate_entries() {
    let up = counting().await;
    let store = Recording::default();
    let rt = || {
        Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .local_throttles() // a get/set/delete store: no fleet throttle verbs
            .principal_key([3; 32])
            .build()
            .unwrap()
    };
    let a = ApiClient::new(&rt()).unwrap();
    let first = a.search("rust", "SECRET-KEY-2").await.unwrap();
    assert!(
        first.url().as_str().ends_with("api_key=REDACTED"),
        "{}",
        first.url()
    );
    let b = ApiClient::new(&rt()).unwrap();
    let shared = b.search("rust", "SECRET-KEY-2").await.unwrap();
    assert_eq!(
        shared.value(),
        first.value(),
        "the same key shares the entry"
    );
    assert_eq!(up.hits(), 1);
    let other = b.search("rust", "SECRET-KEY-3").await.unwrap();
    assert_ne!(other.value(), first.value(), "another key never reads it");
    assert_eq!(up.hits(), 2);

    assert!(
        store.all().contains("api_key=REDACTED"),
        "the record keeps a redacted URL"
    );
    for secret in ["SECRET-KEY-2", "SECRET-KEY-3"] {
        assert!(!store.saw(secret), "{secret} stored: {}", store.all());
    }
}

#[tokio::test]
async fn a_query_marked_secret_is_redacted_and_keyed() {
    let up = counting().await;
    let store = Recording::default();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .local_throttles() // a get/set/delete store: no fleet throttle verbs
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let one = api.marked("SECRET-Q-1").await.unwrap();
    assert_ne!(api.marked("SECRET-Q-2").await.unwrap(), one);
    assert_eq!(api.marked("SECRET-Q-1").await.unwrap(), one);
    assert_eq!(up.hits(), 2);
    assert!(store.all().contains("q=REDACTED"), "{}", store.all());
    assert!(!store.saw("SECRET-Q-1") && !store.saw("SECRET-Q-2"));
}

#[tokio::test]
async fn base_url_userinfo_is_never_printed() {
    let up = counting().await;
    let rt = Runtime::builder()
        .base_url(up.url().replace("http://", "http://admin:hunter2@"))
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    for shown in [format!("{rt:?}"), format!("{api:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
    // The userinfo is still sent (as basic auth) and keeps its own principal.
    api.search("rust", "k").await.unwrap();
    assert!(up.seen()[0].header("authorization").is_some());
}

#[tokio::test]
async fn struct_fields_and_static_query_credentials_are_redacted() {
    let up = counting().await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let error = ApiClient::new(&rt)
        .unwrap()
        .fail_signed(Creds {
            access_token: "SECRET-FIELD-1",
            page: 2,
        })
        .await
        .unwrap_err();
    let Error::Status { url, .. } = &error else {
        panic!("expected a status error, got {error:?}");
    };
    assert!(
        url.ends_with("/fail/signed?sig=REDACTED&v=1&access_token=REDACTED&page=2"),
        "{url}"
    );
    let shown = everything(&error);
    assert!(
        !shown.contains("SECRET-FIELD-1") && !shown.contains("STATIC-SIG"),
        "{shown}"
    );
    assert_eq!(
        up.seen()[0].query.as_deref(),
        Some("sig=STATIC-SIG&v=1&access_token=SECRET-FIELD-1&page=2")
    );
}

#[tokio::test]
async fn session_cookies_in_cached_responses_never_reach_the_store() {
    let up = Upstream::start(|_| {
        Reply::json(json!({"n": 1}))
            .header("set-cookie", "session=SECRET-COOKIE-1; Path=/; HttpOnly")
    })
    .await;
    let store = Recording::default();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .local_throttles() // a get/set/delete store: no fleet throttle verbs
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let first = api.search("rust", "k").await.unwrap();
    // The caller that made the request sees the upstream's cookie ...
    assert!(first.headers().get("set-cookie").is_some());
    // ... but the shared record does not keep it.
    assert!(store.all().contains("application/json"), "{}", store.all());
    assert!(!store.saw("SECRET-COOKIE-1"), "{}", store.all());
}
