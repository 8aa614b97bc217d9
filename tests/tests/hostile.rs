//! Issue 8's run-time promises, tried as a hostile user would: credentials arriving by every
//! route never share an entry, inputs the upstream could see differently never share a key,
//! secrets (static or per call, however spelled) never appear in clear in errors, traces,
//! descriptors or stored records, credentials never follow a redirect to another origin, and
//! every wait and every read stays bounded.
//!
//! Every test first installs one process-wide TRACE subscriber ([`traces`]), so what any test
//! traces is captured (a per-test subscriber would race with the others for tracing's
//! per-callsite interest), and the trace test checks that no secret of any test shows in it.

use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stitch::auth::{Auth, AuthFuture};
use stitch::store::{MemoryStore, Store, StoreFuture};
use stitch::{Bytes, Client, Error, HeaderMap, Runtime};
use stitch_tests::traces::{everything, Capture};
use stitch_tests::{raw_server, Reply, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct Hit {
    n: usize,
}

#[derive(serde::Serialize)]
struct Order {
    sku: &'static str,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Hostile {
    #[stitch(get, path = "/me", cache = "1m")]
    async fn me(&self) -> stitch::Result<Hit>;

    #[stitch(get, path = "/by-header", cache = "1m")]
    async fn by_header(&self, #[header("authorization")] auth: &str) -> stitch::Result<Hit>;

    #[stitch(get, path = "/pairs", cache = "1m")]
    async fn pairs(&self, #[query("a")] a: Vec<u32>) -> stitch::Result<Hit>;

    #[stitch(get, path = "/maybe", cache = "1m")]
    async fn maybe(
        &self,
        #[query("q")] q: Option<&str>,
        #[header("x-flag")] flag: Option<&str>,
    ) -> stitch::Result<Hit>;

    #[stitch(get, path = "/static?api_key=STATIC-KEY-1&v=1", headers("authorization" = "Bearer STATIC-BEARER-1"), cache = "1m")]
    async fn templated(&self) -> stitch::Result<Hit>;

    #[stitch(get, path = "/spelled")]
    async fn spelled(
        &self,
        #[query("accessToken")] camel: &str,
        #[query("Access-Token")] kebab: &str,
        #[query("clientSecret")] client: &str,
    ) -> stitch::Result<Hit>;

    #[stitch(get, path = "/wrapped", cache = "1m")]
    async fn wrapped(&self, #[query("token")] token: &str)
        -> stitch::Result<stitch::Response<Hit>>;

    #[stitch(get, path = "/mapped")]
    async fn mapped(
        &self,
        #[query] pairs: &std::collections::BTreeMap<String, String>,
    ) -> stitch::Result<Hit>;

    #[stitch(get, path = "/echoed")]
    async fn echoed(
        &self,
        #[query("api_key")] key: &str,
        #[header("x-api-key")] header: &str,
    ) -> stitch::Result<Hit>;

    #[stitch(post, path = "/orders", idempotency(from = "order_id"))]
    async fn order(&self, #[query] order_id: &str, #[body] order: &Order) -> stitch::Result<()>;

    #[stitch(
        get,
        path = "/busy",
        retry(attempts = 3, backoff = "fixed", base = "10ms", max = "1s")
    )]
    async fn busy(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/trickle", timeout = "1s")]
    async fn trickle(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/sized")]
    async fn sized(&self) -> stitch::Result<Bytes>;

    #[stitch(head, path = "/sized")]
    async fn sized_head(&self) -> stitch::Result<stitch::Response<()>>;
}

/// An upstream answering `{"n": <requests so far>}`, after `delay`.
async fn counting(delay: Duration) -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |_| Reply::json(json!({"n": n.fetch_add(1, SeqCst) + 1})).after(delay))
        .await
}

fn runtime(up: &Upstream) -> stitch::RuntimeBuilder {
    Runtime::builder().base_url(up.url())
}

/// An auth provider setting one header, whatever its name.
struct Sets(&'static str, &'static str);

impl Auth for Sets {
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()> {
        Box::pin(async move {
            headers.insert(self.0, self.1.parse().expect("ascii"));
            Ok(())
        })
    }
    fn refresh(&self) -> AuthFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

// ---------------------------------------------------------------------------------------------
// Principals: different credentials by any route never share; principals are never coalesced.

#[tokio::test]
async fn different_credentials_by_every_route_never_share_an_entry() {
    traces();
    let up = counting(Duration::ZERO).await;
    let store = MemoryStore::new(100);
    // Each pair: two runtimes on one store with one principal key, differing only in the
    // credential; the second must not read the first's entry.
    let pairs: Vec<(&str, stitch::RuntimeBuilder, stitch::RuntimeBuilder)> = vec![
        (
            "default header, name case",
            runtime(&up).default_header("Authorization", "Bearer A"),
            runtime(&up).default_header("authorization", "Bearer B"),
        ),
        (
            "default api key header",
            runtime(&up).default_header("X-Api-Key", "A"),
            runtime(&up).default_header("x-api-key", "B"),
        ),
        (
            "auth provider with a non-credential header name",
            runtime(&up).auth(Sets("x-tenant", "A")),
            runtime(&up).auth(Sets("x-tenant", "B")),
        ),
        (
            "auth provider against none",
            runtime(&up).auth(Sets("x-tenant", "C")),
            runtime(&up),
        ),
        (
            "base URL userinfo",
            Runtime::builder().base_url(up.url().replace("http://", "http://u:A@")),
            Runtime::builder().base_url(up.url().replace("http://", "http://u:B@")),
        ),
    ];
    for (route, a, b) in pairs {
        let [a, b] = [a, b].map(|r| {
            let rt = r
                .store(store.clone())
                .local_throttles()
                .principal_key([9; 32])
                .build()
                .unwrap();
            HostileClient::new(&rt).unwrap()
        });
        let before = up.hits();
        let first = a.me().await.unwrap();
        let second = b.me().await.unwrap();
        assert_ne!(
            first, second,
            "{route}: the second runtime read the first's entry"
        );
        assert_eq!(up.hits(), before + 2, "{route}");
        // The same credentials on the same key do share (the fleet promise).
        assert_eq!(a.me().await.unwrap(), first, "{route}");
    }

    // The same credential without a shared `principal_key` (random per runtime) would never be
    // shared, silently: a store-backed runtime with credentials is refused instead.
    let refused = runtime(&up)
        .default_header("x-api-key", "SAME")
        .store(store.clone())
        .local_throttles()
        .build()
        .expect_err("a shared store with credentials and no principal_key is refused");
    assert!(refused.to_string().contains("principal_key"), "{refused}");

    // The same runtime: bindings and per-call credentials.
    let rt = runtime(&up).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let anonymous = api.me().await.unwrap();
    let empty = api.as_principal("").me().await.unwrap();
    let alice = api.as_principal("a").me().await.unwrap();
    assert!(anonymous != empty && empty != alice && anonymous != alice);
    let one = api.by_header("Bearer A").await.unwrap();
    let two = api.by_header("Bearer B").await.unwrap();
    assert_ne!(one, two);
    assert_eq!(api.by_header("Bearer A").await.unwrap(), one);
}

#[tokio::test]
async fn two_principals_calling_at_once_are_never_coalesced() {
    traces();
    let up = counting(Duration::from_millis(300)).await;
    let rt = runtime(&up).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let (alice, bob) = (api.as_principal("alice"), api.as_principal("bob"));
    let (a, b, a2) = tokio::join!(alice.me(), bob.me(), alice.me());
    let (a, b, a2) = (a.unwrap(), b.unwrap(), a2.unwrap());
    assert_eq!(up.hits(), 2, "one request per principal");
    assert_ne!(a, b, "bob was handed alice's response");
    assert_eq!(a, a2, "alice's two calls were coalesced");
}

// ---------------------------------------------------------------------------------------------
// Keys: anything the upstream could see differently never shares an entry.

#[tokio::test]
async fn inputs_the_upstream_sees_differently_never_share_a_key() {
    traces();
    let up = counting(Duration::ZERO).await;
    let rt = runtime(&up).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let ab = api.pairs(vec![1, 2]).await.unwrap();
    let ba = api.pairs(vec![2, 1]).await.unwrap();
    let a = api.pairs(vec![1]).await.unwrap();
    let none = api.pairs(vec![]).await.unwrap();
    let all = [&ab, &ba, &a, &none];
    for (i, x) in all.iter().enumerate() {
        for y in &all[i + 1..] {
            assert_ne!(x, y, "query pair order, count and absence are keyed");
        }
    }
    let absent = api.maybe(None, None).await.unwrap();
    let empty = api.maybe(Some(""), None).await.unwrap();
    let flagged = api.maybe(None, Some("")).await.unwrap();
    assert!(absent != empty && empty != flagged && absent != flagged);
    assert_eq!(up.hits(), 7);
    assert_eq!(api.maybe(Some(""), None).await.unwrap(), empty);
    assert_eq!(up.hits(), 7, "an identical call is served from the cache");
}

// ---------------------------------------------------------------------------------------------
// Secrets: static ones and however a per-call one is spelled, in every place shown or kept.

/// Every byte written to or asked of a store.
#[derive(Clone, Default)]
struct Recording {
    inner: MemoryStore,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recording {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

impl Store for Recording {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.seen.lock().unwrap().extend_from_slice(key.as_bytes());
        self.inner.get(key)
    }
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        let mut seen = self.seen.lock().unwrap();
        seen.extend_from_slice(key.as_bytes());
        seen.extend_from_slice(&value);
        drop(seen);
        self.inner.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.inner.delete(key)
    }
}

/// The process-wide capture of everything traced, at every level, installed by the first test.
fn traces() -> &'static Capture {
    Capture::process_wide()
}

/// Every secret the tests of this file send (none may ever be traced).
const SECRETS: &[&str] = &[
    "STATIC-KEY-1",
    "STATIC-BEARER-1",
    "CAMEL-1",
    "KEBAB-1",
    "CLIENT-1",
    "MAPPED-SECRET",
    "ECHO-Q-1",
    "ECHO-H-1",
    "DECODE-Q-1",
    "DECODE-H-1",
    "REDIRECT-1",
    "REDIRECT-2",
    "REDIRECT-3",
    "REDIRECT-4",
    "Bearer A",
    "Bearer B",
    "PRESIGNED-",
    "COOKIE-SECRET-1",
    "PARTIAL-",
    "USERINFO-PW",
    "URL-TOKEN-1",
    "PROVIDER-SECRET-1",
];

#[tokio::test]
async fn static_secrets_never_reach_traces_descriptors_or_the_store() {
    let capture = traces();
    let up = counting(Duration::ZERO).await;
    let store = Recording::default();
    let rt = runtime(&up)
        .store(store.clone())
        .local_throttles()
        .build()
        .unwrap();
    let api = HostileClient::new(&rt).unwrap();
    api.templated().await.unwrap();
    let seen = &up.seen()[0];
    assert_eq!(
        seen.query.as_deref(),
        Some("api_key=STATIC-KEY-1&v=1"),
        "still sent"
    );
    assert_eq!(seen.header("authorization"), Some("Bearer STATIC-BEARER-1"));

    let traced = capture.text();
    assert!(
        traced.contains("url.template"),
        "the capture saw the span: {traced}"
    );
    let described = format!(
        "{:?}\n{:?}\n{}",
        HostileClient::TEMPLATED,
        HostileClient::TEMPLATED.describe(),
        stitch::describe_table(HostileClient::ENDPOINTS)
    );
    assert!(described.contains("/static"), "{described}");
    tokio::time::sleep(Duration::from_millis(200)).await; // the store write runs behind the call
    assert!(store.text().contains("stitch:"), "the record was written");
    for (place, text) in [
        ("traces", traced),
        ("descriptors", described),
        ("store", store.text()),
    ] {
        // The other tests run concurrently: their secrets must not be traced either.
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {place}: {text}");
        }
    }
}

#[tokio::test]
async fn userinfo_and_secret_values_never_reach_response_urls_records_or_errors() {
    traces();
    let up = counting(Duration::ZERO).await;
    let store = Recording::default();
    let rt = Runtime::builder()
        .base_url(up.url().replace("http://", "http://admin:USERINFO-PW@"))
        .store(store.clone())
        .principal_key([3; 32])
        .local_throttles()
        .build()
        .unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let response = api.wrapped("URL-TOKEN-1 &=/é").await.unwrap();
    let url = response.url().as_str();
    assert!(url.ends_with("/wrapped?token=REDACTED"), "{url}");
    assert!(
        up.seen()[0].header("authorization").is_some(),
        "sent as basic auth"
    );
    assert_eq!(
        up.seen()[0].query.as_deref(),
        Some("token=URL-TOKEN-1+%26%3D%2F%C3%A9"),
        "sent encoded"
    );
    tokio::time::sleep(Duration::from_millis(200)).await; // the store write runs behind the call
    let stored = store.text();
    assert!(stored.contains("token=REDACTED"), "{stored}");
    for shown in [format!("{response:?}"), stored, format!("{rt:?} {api:?}")] {
        for secret in ["USERINFO-PW", "URL-TOKEN-1", "URL-TOKEN-1+"] {
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
    }
}

#[tokio::test]
async fn credential_query_keys_are_secret_however_they_are_spelled() {
    traces();
    let up = Upstream::start(|_| Reply::status(500, "no")).await;
    let rt = runtime(&up).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let error = api
        .spelled("CAMEL-1", "KEBAB-1", "CLIENT-1")
        .await
        .unwrap_err();
    let Error::Status { url, .. } = &error else {
        panic!("expected a status error, got {error:?}");
    };
    assert!(
        url.ends_with("?accessToken=REDACTED&Access-Token=REDACTED&clientSecret=REDACTED"),
        "{url}"
    );
    let shown = everything(&error);
    for secret in ["CAMEL-1", "KEBAB-1", "CLIENT-1"] {
        assert!(!shown.contains(secret), "{secret}: {shown}");
    }
}

#[tokio::test]
async fn every_credential_query_key_in_any_case_is_redacted_as_a_map_field() {
    traces();
    let up = Upstream::start(|_| Reply::status(500, "no")).await;
    let rt = runtime(&up).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let mut pairs = std::collections::BTreeMap::new();
    for (i, key) in stitch::auth::CREDENTIAL_QUERY_KEYS.iter().enumerate() {
        // Alternate upper case and capitalised spellings.
        let spelled = if i % 2 == 0 {
            key.to_ascii_uppercase()
        } else {
            format!("{}{}", key[..1].to_ascii_uppercase(), &key[1..])
        };
        pairs.insert(spelled, format!("MAPPED-SECRET-{i}-"));
    }
    pairs.insert("page".into(), "2".into());
    let error = api.mapped(&pairs).await.unwrap_err();
    let sent = up.seen()[0].query.clone().unwrap_or_default();
    assert!(sent.contains("MAPPED-SECRET-0-"), "still sent: {sent}");
    let shown = everything(&error);
    assert!(shown.contains("page=2"), "other pairs are kept: {shown}");
    assert!(!shown.contains("MAPPED-SECRET"), "{shown}");
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Shared {
    #[stitch(get, path = "/motd", cache(ttl = "1m", scope = "app"))]
    async fn motd(&self) -> stitch::Result<Hit>;
}

#[tokio::test]
async fn app_scope_is_refused_for_a_credential_header_however_it_is_spelled() {
    traces();
    for name in [
        "Authorization",
        "COOKIE",
        "X-Api-Key",
        "api_key",
        "X-Goog-Api-Key",
    ] {
        let rt = Runtime::builder()
            .base_url("http://127.0.0.1:9")
            .default_header(name, "v")
            .build()
            .unwrap();
        let error = SharedClient::new(&rt).unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{name}: {error:?}");
    }
    let rt = Runtime::builder()
        .base_url("http://127.0.0.1:9")
        .default_header("accept-language", "de")
        .build()
        .unwrap();
    let shared = SharedClient::new(&rt).expect("not a credential");
    assert!(matches!(shared.motd().await, Err(Error::Transport { .. })));
}

#[tokio::test]
async fn a_secret_the_upstream_echoes_never_appears_in_the_error() {
    traces();
    // Many APIs quote the rejected credential back; the error keeps the body prefix and headers.
    let up = Upstream::start(|seen| {
        let key = seen.header("x-api-key").unwrap_or("").to_owned();
        Reply::status(
            401,
            &format!(
                "bad key {key} for /echoed?{}",
                seen.query.as_deref().unwrap_or("")
            ),
        )
        .header("x-rejected-key", &key)
        .header("set-cookie", "session=COOKIE-SECRET-1; Path=/; HttpOnly")
    })
    .await;
    let rt = runtime(&up).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let error = api.echoed("ECHO-Q-1", "ECHO-H-1").await.unwrap_err();
    let Error::Status { body, headers, .. } = &error else {
        panic!("expected a status error, got {error:?}");
    };
    assert!(body.starts_with("bad key REDACTED"), "{body}");
    assert_eq!(
        headers.get("set-cookie").map(|v| v.as_bytes()),
        Some(&b"session=REDACTED; Path=/; HttpOnly"[..])
    );
    let shown = everything(&error);
    for secret in ["ECHO-Q-1", "ECHO-H-1", "COOKIE-SECRET-1"] {
        assert!(!shown.contains(secret), "{secret}: {shown}");
    }

    // Whatever header an `auth` provider sets is a credential, also under a plain name.
    let quoting = Upstream::start(|seen| {
        let tenant = seen.header("x-tenant").unwrap_or("").to_owned();
        Reply::status(403, &format!("tenant {tenant} may not")).header("x-tenant", &tenant)
    })
    .await;
    let rt = runtime(&quoting)
        .auth(Sets("x-tenant", "PROVIDER-SECRET-1"))
        .build()
        .unwrap();
    let error = HostileClient::new(&rt).unwrap().me().await.unwrap_err();
    assert_eq!(
        quoting.seen()[0].header("x-tenant"),
        Some("PROVIDER-SECRET-1")
    );
    let shown = everything(&error);
    assert!(shown.contains("tenant REDACTED may not"), "{shown}");
    assert!(!shown.contains("PROVIDER-SECRET-1"), "{shown}");

    // A secret cut off where the kept prefix ends is not shown in part either.
    let rt = runtime(&up).error_body_limit(12).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let error = api.echoed("q", "PARTIAL-SECRET-9").await.unwrap_err();
    let Error::Status { body, .. } = &error else {
        panic!("expected a status error, got {error:?}");
    };
    assert_eq!(body, "bad key REDACTED");
}

#[tokio::test]
async fn a_secret_quoted_in_a_body_that_fails_to_decode_never_appears_in_the_error() {
    traces();
    // serde's messages quote the value they reject: `invalid type: string "...", expected usize`.
    let up = Upstream::start(|seen| {
        let quoted = match seen.header("x-quote") {
            Some(_) => seen.header("x-api-key").unwrap_or("").to_owned(),
            None => seen.query.as_deref().unwrap_or("").replace("api_key=", ""),
        };
        Reply::json(json!({ "n": quoted }))
    })
    .await;
    for (quote, secret) in [(false, "DECODE-Q-1"), (true, "DECODE-H-1")] {
        let mut builder = runtime(&up);
        if quote {
            builder = builder.default_header("x-quote", "1");
        }
        let api = HostileClient::new(&builder.build().unwrap()).unwrap();
        let error = api.echoed("DECODE-Q-1", "DECODE-H-1").await.unwrap_err();
        assert!(matches!(error, Error::Decode { .. }), "{error:?}");
        let shown = everything(&error);
        assert!(shown.contains("REDACTED"), "{shown}");
        assert!(!shown.contains(secret), "{secret}: {shown}");
    }
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    traces();
    let elsewhere = Upstream::start(|_| Reply::json(json!({"n": 1}))).await;
    let target = format!("{}/landed", elsewhere.url());
    let up = Upstream::start(move |_| {
        let mut reply = Reply::status(302, "");
        reply.headers.push(("location", target.clone()));
        reply
    })
    .await;
    let rt = runtime(&up)
        .default_header("authorization", "Bearer REDIRECT-1")
        .default_header("x-api-key", "REDIRECT-2")
        .build()
        .unwrap();
    let api = HostileClient::new(&rt).unwrap();
    // Refusing the redirect is as good as following it without credentials.
    let _ = api.echoed("REDIRECT-3", "REDIRECT-4").await;
    assert_eq!(up.hits(), 1);
    // The target of a redirect not followed is shown like any URL: a pre-signed one loses its
    // signature.
    let signed = format!(
        "{}/bucket?X-Amz-Signature=PRESIGNED-1&X-Amz-Credential=PRESIGNED-2&v=1",
        elsewhere.url()
    );
    let presigning = Upstream::start(move |_| {
        let mut reply = Reply::status(307, "");
        reply.headers.push(("location", signed.clone()));
        reply
    })
    .await;
    let rt = runtime(&presigning).build().unwrap();
    let error = HostileClient::new(&rt)
        .unwrap()
        .me()
        .await
        .expect_err("a redirect to another origin is not followed");
    let shown = everything(&error);
    assert!(shown.contains("X-Amz-Signature=REDACTED"), "{shown}");
    assert!(!shown.contains("PRESIGNED-"), "{shown}");
    for seen in elsewhere.seen() {
        for name in ["authorization", "x-api-key"] {
            assert!(
                seen.header(name).is_none(),
                "`{name}` was forwarded to another origin: {:?}",
                seen.headers
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bounds and refusals.

#[tokio::test]
async fn a_non_ascii_idempotency_key_is_refused_before_sending() {
    traces();
    let up = counting(Duration::ZERO).await;
    let rt = runtime(&up).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let error = api
        .order("bestellung-ü", &Order { sku: "a" })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            Error::InvalidArgument {
                argument: "order_id",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(up.hits(), 0, "nothing was sent");
    api.order("order-1", &Order { sku: "a" }).await.unwrap();
    assert_eq!(up.seen()[0].header("idempotency-key"), Some("order-1"));
}

#[tokio::test]
async fn retry_after_dates_and_garbage_are_bounded() {
    traces();
    let hour = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    for (retry_after, hits) in [(hour.as_str(), 1), ("0", 3), ("soon, maybe", 3)] {
        let value = retry_after.to_owned();
        let up = Upstream::start(move |_| Reply::status(503, "busy").header("retry-after", &value))
            .await;
        let rt = runtime(&up).build().unwrap();
        let api = HostileClient::new(&rt).unwrap();
        let started = Instant::now();
        let error = tokio::time::timeout(Duration::from_secs(20), api.busy())
            .await
            .unwrap_or_else(|_| panic!("`Retry-After: {retry_after}` held the call"))
            .unwrap_err();
        assert_eq!(error.status().map(|s| s.as_u16()), Some(503));
        assert_eq!(up.hits(), hits, "Retry-After: {retry_after}");
        assert!(started.elapsed() < Duration::from_secs(10), "{retry_after}");
        if hits == 1 {
            let after = error.retry_after().expect("the error carries the date");
            assert!(after > Duration::from_secs(3000), "{after:?}");
        }
    }
}

#[tokio::test]
async fn a_trickling_error_body_is_bounded_by_the_timeout() {
    traces();
    let url = raw_server(|mut stream| async move {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        // No length, no end: one byte every 100 ms, forever.
        while stream.write_all(b"x").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let rt = Runtime::builder().base_url(url).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(20), api.trickle())
        .await
        .expect("a trickling body held the call past its timeout")
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_read_one_byte_more_is_refused() {
    traces();
    for chunked in [false, true] {
        let url = raw_server(move |mut stream| async move {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let size = if String::from_utf8_lossy(&buf[..n]).contains("x-more") { 1001 } else { 1000 };
            let body = vec![b'a'; size];
            let head = if chunked {
                format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{size:x}\r\n")
            } else {
                format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n")
            };
            let _ = stream.write_all(head.as_bytes()).await;
            if buf.starts_with(b"HEAD") {
                return;
            }
            let _ = stream.write_all(&body).await;
            if chunked {
                let _ = stream.write_all(b"\r\n0\r\n\r\n").await;
            }
        })
        .await;
        let at = Runtime::builder()
            .base_url(&url)
            .max_response_bytes(1000)
            .build()
            .unwrap();
        let body = HostileClient::new(&at).unwrap().sized().await.unwrap();
        assert_eq!(body.len(), 1000, "chunked: {chunked}");
        let over = Runtime::builder()
            .base_url(url)
            .default_header("x-more", "1")
            .max_response_bytes(1000)
            .build()
            .unwrap();
        // `HEAD` announces the length of a body it never sends: nothing to refuse.
        let head = HostileClient::new(&over).unwrap().sized_head().await;
        assert!(head.is_ok(), "chunked: {chunked}: {head:?}");
        let error = HostileClient::new(&over)
            .unwrap()
            .sized()
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::BodyTooLarge { limit: 1000, .. }),
            "chunked: {chunked}: {error:?}"
        );
    }
}
