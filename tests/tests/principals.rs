//! One principal's response is never served to another, whichever way the credential or the
//! varying input arrives: every `#[header]` argument and runtime default header is in the key,
//! `auth` providers are never anonymous, the app-scope refusal sees providers, and stitches
//! sharing a `name` never share entries.

use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use stitch::auth::{Auth, AuthFuture};
use stitch::store::MemoryStore;
use stitch::{Error, HeaderMap, Runtime};
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct Hit {
    n: usize,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Keys {
    #[stitch(get, path = "/k", cache = "1m")]
    async fn api_key(&self, #[header("api-key")] v: &str) -> stitch::Result<Hit>;

    #[stitch(get, path = "/k", cache = "1m")]
    async fn access_token(&self, #[header("x-access-token")] v: &str) -> stitch::Result<Hit>;

    #[stitch(get, path = "/k", cache = "1m")]
    async fn tenant(&self, #[header("x-tenant")] v: &str) -> stitch::Result<Hit>;

    #[stitch(get, path = "/k", cache = "1m")]
    async fn language(&self, #[header("accept-language")] v: &str) -> stitch::Result<Hit>;

    #[stitch(get, path = "/me", cache = "1m")]
    async fn me(&self) -> stitch::Result<Hit>;

    #[stitch(get, path = "/poke")]
    async fn poke(&self) -> stitch::Result<Hit>;
}

/// Answers `{"n": <request number>}`, so two callers sharing an entry see the same `n`.
async fn counting() -> Upstream {
    let n = Arc::new(AtomicUsize::new(0));
    Upstream::start(move |_| Reply::json(json!({"n": n.fetch_add(1, Ordering::SeqCst) + 1}))).await
}

#[tokio::test]
async fn every_header_argument_is_in_the_key() {
    let up = counting().await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = KeysClient::new(&rt).unwrap();
    type Call = for<'a> fn(
        &'a KeysClient,
        &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = stitch::Result<Hit>> + Send + 'a>,
    >;
    let calls: [(&str, Call); 4] = [
        ("api-key", |c, v| Box::pin(c.api_key(v))),
        ("x-access-token", |c, v| Box::pin(c.access_token(v))),
        ("x-tenant", |c, v| Box::pin(c.tenant(v))),
        ("accept-language", |c, v| Box::pin(c.language(v))),
    ];
    for (header, call) in calls {
        let before = up.hits();
        let alice = call(&api, "alice-value").await.unwrap();
        let bob = call(&api, "bob-value").await.unwrap();
        assert_ne!(alice, bob, "`{header}`: bob was served alice's entry");
        assert_eq!(up.hits(), before + 2, "`{header}`");
        assert_eq!(
            call(&api, "alice-value").await.unwrap(),
            alice,
            "`{header}`"
        );
        assert_eq!(
            up.hits(),
            before + 2,
            "`{header}`: the same value shares its entry"
        );
        let seen = up.seen();
        assert_eq!(seen[seen.len() - 1].header(header), Some("bob-value"));
    }
}

#[tokio::test]
async fn runtime_default_headers_are_in_the_key() {
    let up = counting().await;
    let store = MemoryStore::default();
    let with = |lang: &str| {
        let rt = Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .default_header("accept-language", lang)
            .build()
            .unwrap();
        KeysClient::new(&rt).unwrap()
    };
    let cs = with("cs").me().await.unwrap();
    assert_eq!(with("cs").me().await.unwrap(), cs, "same defaults share");
    assert_eq!(up.hits(), 1);
    assert_ne!(
        with("de").me().await.unwrap(),
        cs,
        "other defaults never do"
    );
    assert_eq!(up.hits(), 2);
}

/// A fixed bearer token.
struct Token(&'static str);

impl Auth for Token {
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()> {
        Box::pin(async move {
            headers.insert("authorization", self.0.parse().unwrap());
            Ok(())
        })
    }
    fn refresh(&self) -> AuthFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

fn tenant(up: &Upstream, store: &MemoryStore, auth: impl Auth) -> KeysClient {
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .principal_key([7; 32])
        .auth(auth)
        .build()
        .unwrap();
    KeysClient::new(&rt).unwrap()
}

#[tokio::test]
async fn tenants_with_different_auth_never_share_a_store_entry() {
    let up = counting().await;
    let store = MemoryStore::default();
    let a = tenant(&up, &store, Token("Bearer tenant-a"))
        .me()
        .await
        .unwrap();
    let b = tenant(&up, &store, Token("Bearer tenant-b"))
        .me()
        .await
        .unwrap();
    assert_ne!(a, b, "tenant b was served tenant a's entry");
    assert_eq!(up.hits(), 2);
    // The same credential under the same principal key is the same principal (a fleet).
    let again = tenant(&up, &store, Token("Bearer tenant-a"))
        .me()
        .await
        .unwrap();
    assert_eq!(again, a);
    assert_eq!(up.hits(), 2);
}

/// A bearer token that rotates on refresh; the upstream answers 401 to `/poke` with the first.
struct Rotating(Arc<AtomicUsize>);

impl Auth for Rotating {
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()> {
        let token = format!("Bearer t{}", self.0.load(Ordering::SeqCst));
        Box::pin(async move {
            headers.insert("authorization", token.parse().unwrap());
            Ok(())
        })
    }
    fn refresh(&self) -> AuthFuture<'_, ()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn a_refresh_retires_the_principal_of_the_old_credentials() {
    let n = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |seen| {
        let first = seen.header("authorization") == Some("Bearer t0");
        if seen.path == "/poke" && first {
            return Reply::status(401, "expired");
        }
        Reply::json(json!({"n": n.fetch_add(1, Ordering::SeqCst) + 1}))
    })
    .await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth(Rotating(Arc::default()))
        .build()
        .unwrap();
    let api = KeysClient::new(&rt).unwrap();
    let old = api.me().await.unwrap();
    assert_eq!(api.me().await.unwrap(), old);
    api.poke().await.unwrap(); // 401, refresh to t1, redo
    let new = api.me().await.unwrap();
    assert_ne!(
        new, old,
        "the new credentials were served the old ones' entry"
    );
    let seen = up.seen();
    assert_eq!(
        seen[seen.len() - 1].header("authorization"),
        Some("Bearer t1")
    );
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Shared {
    #[stitch(get, path = "/motd", cache(ttl = "1m", scope = "app"))]
    async fn motd(&self) -> stitch::Result<Hit>;
}

#[tokio::test]
async fn an_auth_provider_or_base_url_userinfo_refuses_an_unacknowledged_app_scope() {
    let up = counting().await;
    let with_auth = Runtime::builder()
        .base_url(up.url())
        .auth(Token("Bearer x"))
        .build()
        .unwrap();
    let userinfo = Runtime::builder()
        .base_url(up.url().replace("http://", "http://user:pw@"))
        .build()
        .unwrap();
    for rt in [with_auth, userinfo] {
        match SharedClient::new(&rt) {
            Err(Error::Config { stitch, reason }) => {
                assert!(stitch.ends_with("Shared::motd"), "{stitch}");
                assert!(reason.contains("same_for_every_principal"), "{reason}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
    let plain = Runtime::builder().base_url(up.url()).build().unwrap();
    SharedClient::new(&plain).unwrap().motd().await.unwrap();
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait StatsA {
    #[stitch(get, path = "/stats", pick = "a", cache = "1m", name = "stats")]
    async fn stats(&self) -> stitch::Result<u64>;
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait StatsB {
    #[stitch(get, path = "/stats", pick = "b", cache = "1m", name = "stats")]
    async fn stats(&self) -> stitch::Result<u64>;
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait StatsC {
    #[stitch(
        get,
        path = "/stats",
        pick = "a",
        cache = "1m",
        name = "stats",
        headers("x-scale" = "1000")
    )]
    async fn stats(&self) -> stitch::Result<u64>;
}

#[tokio::test]
async fn stitches_sharing_a_name_never_share_entries() {
    let n = Arc::new(AtomicUsize::new(0));
    let up = Upstream::start(move |seen| {
        let n = n.fetch_add(1, Ordering::SeqCst) as u64;
        let scale = if seen.header("x-scale").is_some() {
            1000
        } else {
            1
        };
        Reply::json(json!({"a": (10 + n) * scale, "b": 20 + n}))
    })
    .await;
    let store = MemoryStore::default();
    let rt = || {
        Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .build()
            .unwrap()
    };
    let (one, two) = (rt(), rt());
    // One runtime (the in-process tier) and two runtimes on one store (the shared tier).
    assert_eq!(StatsAClient::new(&one).unwrap().stats().await.unwrap(), 10);
    assert_eq!(StatsBClient::new(&one).unwrap().stats().await.unwrap(), 21);
    assert_eq!(StatsBClient::new(&two).unwrap().stats().await.unwrap(), 21);
    assert_eq!(
        StatsCClient::new(&two).unwrap().stats().await.unwrap(),
        12_000
    );
    assert_eq!(StatsAClient::new(&two).unwrap().stats().await.unwrap(), 10);
    assert_eq!(
        up.hits(),
        3,
        "each stitch read its own entries, and only those"
    );
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Signed {
    #[stitch(get, path = "/signed", cache = "1m")]
    async fn signed(&self, #[header("x-signature", secret)] sig: &str) -> stitch::Result<Hit>;

    #[stitch(get, path = "/plain", cache = "1m")]
    async fn plain(&self, #[header("x-tenant")] tenant: &str) -> stitch::Result<Hit>;
}

#[tokio::test]
async fn a_secret_header_is_keyed_only_under_the_principal_key() {
    let up = counting().await;
    let store = MemoryStore::default();
    let client = |key: u8| {
        let rt = Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .principal_key([key; 32])
            .build()
            .unwrap();
        SignedClient::new(&rt).unwrap()
    };
    let (one, two, fleet) = (client(1), client(2), client(1));
    // A plain header value is keyed as it is: shared by every runtime on the store.
    let plain = one.plain("acme").await.unwrap();
    assert_eq!(two.plain("acme").await.unwrap(), plain);
    assert_eq!(up.hits(), 1);
    // A secret one is keyed through the principal key: shared only under the same key.
    let signed = one.signed("s1").await.unwrap();
    assert_ne!(two.signed("s1").await.unwrap(), signed);
    assert_eq!(fleet.signed("s1").await.unwrap(), signed);
    assert_ne!(fleet.signed("s2").await.unwrap(), signed);
    assert_eq!(up.hits(), 4);
}
