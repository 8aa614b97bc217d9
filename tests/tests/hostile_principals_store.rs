//! Hostile-use probes: principals across a fleet and app-scope refusals (README "Cache keys and
//! principals", issue 10 §5).

use bytes::Bytes;
use std::time::Duration;
use stitch::auth::{Bearer, Secret};
use stitch::store::{MemoryStore, Store, StoreFuture};
use stitch::{Error, Runtime};

/// A store with plain `get`/`set`/`delete` only.
#[derive(Clone, Default)]
struct Plain(MemoryStore);

impl Store for Plain {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.0.get(key)
    }
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        self.0.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.0.delete(key)
    }
}

struct Fixed;

impl stitch::auth::Auth for Fixed {
    fn apply<'a>(&'a self, headers: &'a mut stitch::HeaderMap) -> stitch::auth::AuthFuture<'a, ()> {
        headers.insert("authorization", "Bearer p".parse().unwrap());
        Box::pin(async { Ok(()) })
    }
    fn refresh(&self) -> stitch::auth::AuthFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// README: "`build()` refuses a store-backed runtime with credentials (an `auth` provider or
/// strategy, a default credential header, base-URL userinfo) and no `principal_key`"; "a runtime
/// with a store and credentials of its own is refused at `build()` without one".
#[tokio::test]
async fn store_backed_runtimes_with_credentials_need_a_principal_key() {
    type Step = fn(stitch::RuntimeBuilder) -> stitch::RuntimeBuilder;
    let credentials: [(&str, Step); 5] = [
        ("strategy", |b| {
            b.auth_strategy("acme", Bearer::new(Secret::new("t")))
                .store_credentials_in_plaintext()
        }),
        ("provider", |b| b.auth(Fixed)),
        ("default authorization", |b| {
            b.default_header("authorization", "Bearer t")
        }),
        ("default x-api-key", |b| b.default_header("x-api-key", "k")),
        ("userinfo", |b| b.base_url("http://u:p@127.0.0.1:1")),
    ];
    for (what, add) in credentials {
        for fleet in [true, false] {
            let b = Runtime::builder().local_throttles();
            let b = if fleet {
                b.store(MemoryStore::new(10))
            } else {
                b.store(Plain::default())
            };
            match add(b).build() {
                Err(Error::Config { .. }) => {}
                Err(e) => panic!("{what} (fleet store: {fleet}): refused with {e}"),
                Ok(_) => panic!("{what} (fleet store: {fleet}): built without a principal_key"),
            }
        }
    }
}

#[stitch::seam(base_url = "http://127.0.0.1:1")]
#[allow(dead_code)] // only its client is built
trait Shared {
    #[stitch(get, path = "/x", cache(ttl = "1m", scope = "app"))]
    async fn x(&self) -> stitch::Result<String>;
}

/// README: "A `scope = "app"` stitch without `same_for_every_principal` is refused with
/// `Error::Config` — when a client is built and on every call ... whenever the runtime has an
/// `auth` provider, a default credential header or base-URL userinfo."
#[tokio::test]
async fn app_scope_is_refused_when_the_runtime_has_credentials() {
    type Step = fn(stitch::RuntimeBuilder) -> stitch::RuntimeBuilder;
    let credentials: [(&str, Step); 4] = [
        ("provider", |b| b.auth(Fixed)),
        ("default authorization", |b| {
            b.default_header("authorization", "Bearer t")
        }),
        ("default cookie", |b| b.default_header("Cookie", "sid=1")),
        ("userinfo", |b| b.base_url("http://u:p@127.0.0.1:1")),
    ];
    for (what, add) in credentials {
        let rt = add(Runtime::builder()).build().unwrap();
        match SharedClient::new(&rt) {
            Err(Error::Config { .. }) => {}
            Err(e) => panic!("{what}: refused with {e}"),
            Ok(_) => panic!("{what}: client built"),
        }
    }
    // Without credentials: built.
    SharedClient::new(&Runtime::builder().build().unwrap()).unwrap();
}

#[stitch::seam(base_url = "http://declared.invalid", auth = "key")]
trait Keyed {
    #[stitch(get, path = "/k/{id}", cache = "1m")]
    async fn k(&self, id: u64, #[query("q", secret)] q: &str) -> stitch::Result<serde_json::Value>;
}

/// README: "secrets never appear in errors, traces or store keys"; records written to a shared
/// store are redacted. Everything a real Redis holds after cached calls, scanned for the secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_in_redis() {
    use stitch_tests::{Reply, Upstream};
    let redis = stitch_tests::fleet::Redis::start(&[]);
    let up = Upstream::start(|seen| {
        Reply::json(serde_json::json!({"n": 1}))
            .header("set-cookie", "sid=COOKIESECRET1; Path=/")
            .header("x-echo", seen.query.as_deref().unwrap_or(""))
            .header("x-echo-key", seen.header("x-api-key").unwrap_or(""))
    })
    .await;
    let store = stitch::store::RedisStore::connect(&redis.url())
        .await
        .unwrap();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .principal_key([1; 32])
        .default_header("x-api-key", "DEFAULTKEY2")
        .auth_strategy(
            "key",
            stitch::auth::ApiKey::query("appid", Secret::new("APPIDSECRET3")),
        )
        .build()
        .unwrap();
    let api = KeyedClient::new(&rt).unwrap();
    for id in 0..3 {
        api.k(id, "QSECRET4").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let keys = redis.cli(&["--scan"]);
    let mut all = keys.clone();
    for key in keys.lines() {
        let kind = redis.cli(&["TYPE", key]);
        let value = match kind.as_str() {
            "string" => redis.cli(&["GET", key]),
            "hash" => redis.cli(&["HGETALL", key]),
            "zset" => redis.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
            "set" => redis.cli(&["SMEMBERS", key]),
            "list" => redis.cli(&["LRANGE", key, "0", "-1"]),
            other => format!("<{other}>"),
        };
        all.push_str(&format!("\n{key} => {value}"));
    }
    println!("{all}");
    assert!(all.contains("REDACTED") || all.contains("n"), "{all}");
    for s in ["COOKIESECRET1", "DEFAULTKEY2", "APPIDSECRET3", "QSECRET4"] {
        assert!(!all.contains(s), "{s} in redis: {all}");
    }
}

/// The store's own secret (a Redis password in its URL) never shows in `Debug` of the store or
/// the runtime, in a connection error, or in what is traced while the store is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_never_shows() {
    let (capture, _guard) = stitch_tests::traces::Capture::on_this_thread();
    let mut redis = stitch_tests::fleet::Redis::start(&[]);
    redis.cli(&["CONFIG", "SET", "requirepass", "REDISPW1SECRET"]);
    let url = format!("redis://:REDISPW1SECRET@127.0.0.1:{}", redis.port());
    let wrong = format!("redis://:REDISPW2SECRET@127.0.0.1:{}", redis.port());
    match stitch::store::RedisStore::connect(&wrong).await {
        Ok(store) => {
            let shown = format!("{store:?}");
            assert!(!shown.contains("REDISPW2SECRET"), "{shown}");
        }
        Err(e) => {
            let shown = everything_of(&e);
            println!("wrong password: {e}");
            assert!(!shown.contains("REDISPW2SECRET"), "{shown}");
        }
    }
    let store = stitch::store::RedisStore::connect(&url).await.unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains("REDISPW1SECRET"), "{shown}");
    let rt = Runtime::builder()
        .base_url("http://127.0.0.1:1")
        .store(store)
        .store_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let shown = format!("{rt:?}");
    assert!(!shown.contains("REDISPW1SECRET"), "{shown}");
    let api = KeylessClient::new(&rt).unwrap();
    let _ = api.k(1).await;
    redis.kill();
    for id in 2..4 {
        if let Err(e) = api.k(id).await {
            let shown = everything_of(&e);
            assert!(!shown.contains("REDISPW1SECRET"), "{shown}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let traced = capture.text();
    assert!(!traced.contains("REDISPW1SECRET"), "{traced}");
}

fn everything_of(error: &(dyn std::error::Error + 'static)) -> String {
    stitch_tests::traces::everything(error)
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Keyless {
    #[stitch(get, path = "/k/{id}", cache = "1m", throttle = "100/s")]
    async fn k(&self, id: u64) -> stitch::Result<String>;
}
