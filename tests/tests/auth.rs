//! Auth strategies against a real loopback upstream: each built-in strategy puts its credential
//! where declared and nowhere else; a stitch naming an unregistered strategy is refused when its
//! client is built; refreshes are single-flight per credential; secrets never show in errors,
//! `Debug` or TRACE output; a cross-origin redirect carries no credential.
//!
//! Descriptors are built by hand (`auth("name")` is what the macro emits for `auth = "name"`).
//!
//! One test here installs a tracing subscriber: tracing caches per-callsite interest process-wide,
//! so that test also asserts it captured the events it looks into (it cannot pass by seeing none).

use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stitch::__private as s;
use stitch::auth::{
    ApiKey, AuthContext, AuthFuture, AuthRequest, Basic, Bearer, Credential, Identity, Secret,
    Strategy,
};
use stitch::{Endpoint, Error, Runtime};
use stitch_tests::traces::{everything, Capture};
use stitch_tests::{Reply, Seen, Upstream};

const BASE: &str = "http://declared.invalid";

static BEARER: Endpoint = s::Endpoint::get("auth::bearer", "/r", &["/r"])
    .base_url(BASE)
    .auth("bearer");
static HEADER_KEY: Endpoint = s::Endpoint::get("auth::header_key", "/r", &["/r"])
    .base_url(BASE)
    .auth("header-key");
static QUERY_KEY: Endpoint = s::Endpoint::get("auth::query_key", "/r", &["/r"])
    .base_url(BASE)
    .auth("query-key");
static COOKIE_KEY: Endpoint = s::Endpoint::get("auth::cookie_key", "/r", &["/r"])
    .base_url(BASE)
    .headers(&[("cookie", "theme=dark")])
    .auth("cookie-key");
static BASIC: Endpoint = s::Endpoint::get("auth::basic", "/r", &["/r"])
    .base_url(BASE)
    .auth("basic");
static PLAIN: Endpoint = s::Endpoint::get("auth::plain", "/r", &["/r"]).base_url(BASE);
static OPTED_OUT: Endpoint = s::Endpoint::get("auth::opted_out", "/r", &["/r"])
    .base_url(BASE)
    .auth("none");
static UNKNOWN: Endpoint = s::Endpoint::get("auth::unknown", "/r", &["/r"])
    .base_url(BASE)
    .auth("acme");
static ROTATING: Endpoint = s::Endpoint::get("auth::rotating", "/r", &["/r"])
    .base_url(BASE)
    .auth("rotating");
static CACHED_A: Endpoint = s::Endpoint::get("auth::cached_a", "/me", &["/me"])
    .base_url(BASE)
    .cache(s::cached::<String>(s::ms(60_000), 1))
    .auth("a");
static CACHED_B: Endpoint = s::Endpoint::get("auth::cached_b", "/me", &["/me"])
    .base_url(BASE)
    .cache(s::cached::<String>(s::ms(60_000), 1))
    .auth("b");

const EVERY: &[&Endpoint] = &[
    &BEARER,
    &HEADER_KEY,
    &QUERY_KEY,
    &COOKIE_KEY,
    &BASIC,
    &PLAIN,
    &OPTED_OUT,
];

/// A client core over `endpoints` (checked like a generated client's `new`).
fn client(rt: &Runtime, endpoints: &[&'static Endpoint]) -> stitch::Result<s::ClientCore> {
    s::ClientCore::new(rt, Box::leak(endpoints.to_vec().into_boxed_slice()))
}

async fn text(core: &s::ClientCore, endpoint: &'static Endpoint) -> stitch::Result<String> {
    s::call::<s::Json<String>>(core, s::RequestParts::new(endpoint)).await
}

async fn cached(core: &s::ClientCore, endpoint: &'static Endpoint) -> stitch::Result<String> {
    s::call_cached::<s::Json<String>>(core, s::RequestParts::new(endpoint)).await
}

/// Every place of a seen request where `needle` occurs: header names, the query, the body.
fn places(seen: &Seen, needle: &str) -> Vec<String> {
    let mut at = Vec::new();
    for (name, value) in &seen.headers {
        if String::from_utf8_lossy(value.as_bytes()).contains(needle) {
            at.push(format!("header {name}"));
        }
    }
    if seen.query.as_deref().is_some_and(|q| q.contains(needle)) {
        at.push("query".into());
    }
    if String::from_utf8_lossy(&seen.body).contains(needle) {
        at.push("body".into());
    }
    at
}

fn ok_upstream() -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    |_| Reply::json(json!("ok"))
}

#[tokio::test]
async fn each_strategy_puts_its_credential_where_declared_and_nowhere_else() {
    let up = Upstream::start(ok_upstream()).await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("bearer", Bearer::new("BEARER-1"))
        .auth_strategy("header-key", ApiKey::header("x-acme-key", "HKEY-1"))
        .auth_strategy("query-key", ApiKey::query("key", "QKEY-1"))
        .auth_strategy("cookie-key", ApiKey::cookie("sid", "CKEY-1"))
        .auth_strategy("basic", Basic::new("ada", "PASSWORD-1"))
        .build()
        .unwrap();
    let core = s::ClientCore::new(&rt, EVERY).unwrap();
    for endpoint in EVERY {
        text(&core, endpoint).await.unwrap();
    }
    let seen = up.seen();
    assert_eq!(seen.len(), EVERY.len());
    // base64("ada:PASSWORD-1")
    let basic = "YWRhOlBBU1NXT1JELTE=";
    let secrets = ["BEARER-1", "HKEY-1", "QKEY-1", "CKEY-1", basic];
    let expected: [&[&str]; 7] = [
        &["header authorization"],
        &["header x-acme-key"],
        &["query"],
        &["header cookie"],
        &["header authorization"],
        &[],
        &[],
    ];
    for (i, (request, want)) in seen.iter().zip(expected).enumerate() {
        for (j, secret) in secrets.iter().enumerate() {
            let found = places(request, secret);
            let want: Vec<String> = if i == j {
                want.iter().map(|w| w.to_string()).collect()
            } else {
                vec![]
            };
            assert_eq!(found, want, "{} with {secret}", EVERY[i].name());
        }
    }
    assert_eq!(seen[0].header("authorization"), Some("Bearer BEARER-1"));
    assert_eq!(seen[2].query.as_deref(), Some("key=QKEY-1"));
    // Added to the stitch's own cookie, not replacing it.
    assert_eq!(seen[3].header("cookie"), Some("theme=dark; sid=CKEY-1"));
    assert_eq!(
        seen[4].header("authorization"),
        Some(&*format!("Basic {basic}"))
    );
}

#[tokio::test]
async fn the_runtime_provider_applies_unless_a_stitch_opts_out_or_names_a_strategy() {
    let up = Upstream::start(ok_upstream()).await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .default_header("x-trace", "t")
        .auth(FixedProvider)
        .auth_strategy("bearer", Bearer::new("BEARER-2"))
        .build()
        .unwrap();
    let core = client(&rt, &[&PLAIN, &OPTED_OUT, &BEARER]).unwrap();
    for endpoint in [&PLAIN, &OPTED_OUT, &BEARER] {
        text(&core, endpoint).await.unwrap();
    }
    let seen = up.seen();
    assert_eq!(seen[0].header("x-provider"), Some("PROVIDER-1"));
    assert_eq!(
        seen[1].header("x-provider"),
        None,
        "`auth = \"none\"` opts out"
    );
    assert_eq!(
        seen[2].header("x-provider"),
        None,
        "the strategy replaces the provider"
    );
    assert_eq!(seen[2].header("authorization"), Some("Bearer BEARER-2"));
}

struct FixedProvider;

impl stitch::auth::Auth for FixedProvider {
    fn apply<'a>(&'a self, headers: &'a mut stitch::HeaderMap) -> AuthFuture<'a, ()> {
        headers.insert("x-provider", "PROVIDER-1".parse().unwrap());
        Box::pin(async { Ok(()) })
    }
    fn refresh(&self) -> AuthFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn an_unregistered_strategy_fails_client_construction_naming_it() {
    let rt = Runtime::builder()
        .auth_strategy("other", Bearer::new("x"))
        .build()
        .unwrap();
    let error = client(&rt, &[&PLAIN, &UNKNOWN]).unwrap_err();
    let Error::Config { stitch, reason } = &error else {
        panic!("expected a config error, got {error:?}");
    };
    assert_eq!(*stitch, "auth::unknown");
    assert!(
        reason.contains("`auth = \"acme\"`")
            && reason.contains(".auth_strategy(\"acme\", strategy)")
            && reason.contains("registered: `other`"),
        "{reason}"
    );
    // A stitch reached without a checked client (a free stitch) fails on its call.
    let unchecked = client(&rt, &[]).unwrap();
    let error = text(&unchecked, &UNKNOWN).await.unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error:?}");

    let twice = Runtime::builder()
        .auth_strategy("a", Bearer::new("1"))
        .auth_strategy("a", Bearer::new("2"))
        .build()
        .unwrap_err();
    assert!(
        twice.to_string().contains("`a` is registered twice"),
        "{twice}"
    );
    let reserved = Runtime::builder()
        .auth_strategy("none", Bearer::new("1"))
        .build()
        .unwrap_err();
    assert!(
        reserved.to_string().contains("`none` is reserved"),
        "{reserved}"
    );
}

/// A token that rotates on refresh: `tok-<generation>`; counts refreshes and the credentials
/// they were asked for.
#[derive(Clone, Default)]
struct Rotating {
    generation: Arc<AtomicU64>,
    refreshes: Arc<Mutex<Vec<u64>>>,
}

impl Strategy for Rotating {
    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        _cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential> {
        Box::pin(async move {
            let generation = self.generation.load(Ordering::SeqCst);
            request.set_credential_header("authorization", &format!("Bearer tok-{generation}"))?;
            Ok(Credential(generation))
        })
    }

    fn refresh<'a>(&'a self, failed: Credential, _cx: &'a AuthContext) -> AuthFuture<'a, ()> {
        Box::pin(async move {
            self.refreshes.lock().unwrap().push(failed.0);
            // A slow token endpoint: every other 401 arrives while this runs.
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.generation.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn identity(&self) -> Identity {
        Identity::Named("rotating".into())
    }
}

#[tokio::test]
async fn concurrent_401s_on_one_credential_cause_one_refresh_and_stale_ones_none() {
    // `tok-0` is rejected; the upstream answers slowly so all calls hold `tok-0` at once.
    let up = Upstream::start(|seen| {
        if seen.header("authorization") == Some("Bearer tok-0") {
            Reply::status(401, "expired").after(Duration::from_millis(50))
        } else {
            Reply::json(json!("ok"))
        }
    })
    .await;
    let strategy = Rotating::default();
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("rotating", strategy.clone())
        .build()
        .unwrap();
    let core = client(&rt, &[&ROTATING]).unwrap();
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let core = core.clone();
            tokio::spawn(async move { text(&core, &ROTATING).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "ok");
    }
    assert_eq!(
        *strategy.refreshes.lock().unwrap(),
        vec![0],
        "one refresh, for the credential that failed"
    );
    assert_eq!(strategy.generation.load(Ordering::SeqCst), 1);
    let rejected = up
        .seen()
        .iter()
        .filter(|s| s.header("authorization") == Some("Bearer tok-0"))
        .count();
    assert_eq!(
        rejected, 32,
        "every call was rejected once, then redone with tok-1"
    );
    assert_eq!(up.hits(), 64);
}

#[tokio::test]
async fn a_rejected_fixed_credential_is_the_outcome_without_a_second_request() {
    let up = Upstream::start(|_| Reply::status(401, "no")).await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("bearer", Bearer::new("BEARER-401"))
        .auth_strategy("header-key", ApiKey::header("x-acme-key", "HKEY-401"))
        .auth_strategy("basic", Basic::new("ada", "PASSWORD-401"))
        .build()
        .unwrap();
    let core = client(&rt, &[&BEARER, &HEADER_KEY, &BASIC]).unwrap();
    for (n, endpoint) in [&BEARER, &HEADER_KEY, &BASIC].into_iter().enumerate() {
        let error = text(&core, endpoint).await.unwrap_err();
        assert_eq!(error.status().map(|s| s.as_u16()), Some(401), "{error}");
        // A fixed credential cannot be refreshed: resending it would be rejected again.
        assert_eq!(up.hits(), n + 1, "strategy {n}: one request, no redo");
    }
}

#[tokio::test]
async fn a_still_rejected_credential_is_refreshed_once_per_call_then_the_401_is_returned() {
    let up = Upstream::start(|_| Reply::status(401, "no")).await;
    let strategy = Rotating::default();
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("rotating", strategy.clone())
        .build()
        .unwrap();
    let core = client(&rt, &[&ROTATING]).unwrap();
    let error = text(&core, &ROTATING).await.unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(401));
    assert_eq!(up.hits(), 2, "one redo after the refresh, not a loop");
    assert_eq!(*strategy.refreshes.lock().unwrap(), vec![0]);
}

#[tokio::test]
async fn two_strategies_never_share_a_principal_scoped_entry() {
    let up =
        Upstream::start(|seen| Reply::json(json!(seen.header("authorization").unwrap_or("none"))))
            .await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("a", Bearer::new("A-1"))
        .auth_strategy("b", Bearer::new("B-1"))
        .build()
        .unwrap();
    let core = client(&rt, &[&CACHED_A, &CACHED_B]).unwrap();
    assert_eq!(cached(&core, &CACHED_A).await.unwrap(), "Bearer A-1");
    assert_eq!(cached(&core, &CACHED_A).await.unwrap(), "Bearer A-1");
    assert_eq!(cached(&core, &CACHED_B).await.unwrap(), "Bearer B-1");
    assert_eq!(
        up.hits(),
        2,
        "the second `a` call was a hit; `b` was not served `a`'s entry"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_errors_debug_or_traces() {
    let (capture, _guard) = Capture::on_this_thread();
    let up = Upstream::start(|_| Reply::status(500, "down")).await;
    let closed = "127.0.0.1:9"; // discard port: nothing listens
    let token_url = format!("http://{closed}/token");
    let rt = Runtime::builder()
        .base_url(up.url())
        // Not a well-known credential key: redacted because the strategy put it there.
        .auth_strategy("query-key", ApiKey::query("plan", "TRACE-Q-1"))
        .auth_strategy("header-key", ApiKey::header("x-acme-key", "TRACE-H-1"))
        .auth_strategy(
            "bearer",
            stitch::auth::ClientCredentials::new(token_url, "client-1", "TRACE-CS-1"),
        )
        .build()
        .unwrap();
    let core = client(&rt, &[&QUERY_KEY, &HEADER_KEY, &BEARER]).unwrap();
    let mut shown = String::new();
    for endpoint in [&QUERY_KEY, &HEADER_KEY, &BEARER] {
        let error = text(&core, endpoint).await.unwrap_err();
        shown.push_str(&everything(&error));
    }
    assert!(
        shown.contains("plan=REDACTED"),
        "the query key is redacted: {shown}"
    );
    assert!(
        shown.contains("auth strategy"),
        "the token fetch failed: {shown}"
    );
    let secret = Secret::new("TRACE-S-1");
    shown.push_str(&format!(
        "{secret:?}\n{rt:?}\n{core:?}\n{:?}\n{:?}",
        ApiKey::header("x", secret.clone()),
        stitch::auth::ClientCredentials::new("http://t", "c", "TRACE-S-1")
    ));
    let traced = capture.text();
    assert!(
        traced.contains("auth::query_key"),
        "the capture saw the calls: {traced}"
    );
    for needle in ["TRACE-Q-1", "TRACE-H-1", "TRACE-CS-1", "TRACE-S-1"] {
        assert!(!shown.contains(needle), "{needle} shown: {shown}");
        assert!(!traced.contains(needle), "{needle} traced: {traced}");
    }
    assert!(shown.contains("Secret(REDACTED)"));
}

#[tokio::test]
async fn a_redirect_to_another_origin_carries_no_credential() {
    let elsewhere = Upstream::start(ok_upstream()).await;
    let target = format!("{}/landed", elsewhere.url());
    let up = Upstream::start(move |seen| {
        if seen.path == "/r" {
            let mut reply = Reply::status(302, "");
            reply.headers.push(("location", target.clone()));
            reply
        } else {
            Reply::json(json!("same origin"))
        }
    })
    .await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("header-key", ApiKey::header("x-acme-key", "REDIR-1"))
        .auth_strategy("cookie-key", ApiKey::cookie("sid", "REDIR-2"))
        .build()
        .unwrap();
    let core = client(&rt, &[&HEADER_KEY, &COOKIE_KEY]).unwrap();
    for endpoint in [&HEADER_KEY, &COOKIE_KEY] {
        let error = text(&core, endpoint).await.unwrap_err();
        assert_eq!(error.status().map(|s| s.as_u16()), Some(302), "{error:?}");
    }
    assert_eq!(elsewhere.hits(), 0, "the other origin was never asked");

    // Within the origin, redirects are followed (with the credential: it is the same server).
    static HOP: Endpoint = s::Endpoint::get("auth::hop", "/hop", &["/hop"])
        .base_url(BASE)
        .auth("header-key");
    let up2 = Upstream::start(|seen| {
        if seen.path == "/hop" {
            let mut reply = Reply::status(307, "");
            reply.headers.push(("location", "/there".into()));
            reply
        } else {
            Reply::json(json!(seen.header("x-acme-key").unwrap_or("none")))
        }
    })
    .await;
    let rt2 = Runtime::builder()
        .base_url(up2.url())
        .auth_strategy("header-key", ApiKey::header("x-acme-key", "REDIR-3"))
        .build()
        .unwrap();
    let core2 = client(&rt2, &[&HOP]).unwrap();
    assert_eq!(text(&core2, &HOP).await.unwrap(), "REDIR-3");
}

#[tokio::test]
async fn a_rotating_secret_source_is_read_on_every_request() {
    let up = Upstream::start(ok_upstream()).await;
    let n = Arc::new(AtomicUsize::new(0));
    let source = n.clone();
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy(
            "bearer",
            Bearer::new(Secret::from_fn(move || {
                format!("ROT-{}", source.fetch_add(1, Ordering::SeqCst))
            })),
        )
        .build()
        .unwrap();
    let core = client(&rt, &[&BEARER]).unwrap();
    text(&core, &BEARER).await.unwrap();
    text(&core, &BEARER).await.unwrap();
    let seen = up.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer ROT-0"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer ROT-1"));
}

#[tokio::test]
async fn app_scope_on_a_stitch_with_a_strategy_needs_the_acknowledgement() {
    static SHARED: Endpoint = s::Endpoint::get("auth::shared", "/me", &["/me"])
        .base_url(BASE)
        .cache(s::cached::<String>(s::ms(60_000), 1).app_scope(false))
        .auth("a");
    static SHARED_OPTED_OUT: Endpoint = s::Endpoint::get("auth::shared_none", "/me", &["/me"])
        .base_url(BASE)
        .cache(s::cached::<String>(s::ms(60_000), 1).app_scope(false))
        .auth("none");
    // The runtime itself sends no credential: only the strategy makes the stitch authenticated.
    let rt = Runtime::builder()
        .auth_strategy("a", Bearer::new("A-2"))
        .build()
        .unwrap();
    let error = client(&rt, &[&SHARED]).unwrap_err();
    assert!(
        matches!(&error, Error::Config { reason, .. } if reason.contains("same_for_every_principal")),
        "{error:?}"
    );
    client(&rt, &[&SHARED_OPTED_OUT]).unwrap();
}

#[stitch::seam(base_url = "http://declared.invalid", auth = "acme")]
trait Declared {
    #[stitch(get, path = "/a")]
    async fn seam_strategy(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/b", auth = "maps")]
    async fn own_strategy(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/c", auth = "none")]
    async fn opted_out(&self) -> stitch::Result<String>;
}

#[tokio::test]
async fn declared_strategies_resolve_on_the_seam_and_the_method() {
    let up = Upstream::start(|seen| {
        let key = seen.query.clone().unwrap_or_default();
        Reply::status(
            200,
            &format!("{} {key}", seen.header("authorization").unwrap_or("-")),
        )
    })
    .await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("acme", Bearer::new("DECL-1"))
        .auth_strategy("maps", ApiKey::query("key", "DECL-2"))
        .build()
        .unwrap();
    let api = DeclaredClient::new(&rt).unwrap();
    assert_eq!(api.seam_strategy().await.unwrap(), "Bearer DECL-1 ");
    assert_eq!(api.own_strategy().await.unwrap(), "- key=DECL-2");
    assert_eq!(api.opted_out().await.unwrap(), "- ");
    let missing = Runtime::builder()
        .auth_strategy("acme", Bearer::new("DECL-1"))
        .build()
        .unwrap();
    let error = DeclaredClient::new(&missing).unwrap_err();
    assert!(error.to_string().contains("`auth = \"maps\"`"), "{error}");
}
