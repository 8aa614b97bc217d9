//! One login and one token per fleet, across 8 OS processes (this test binary re-executed as
//! workers) sharing one real `redis-server`, against a loopback upstream in the parent that
//! counts logins and token requests and can expire every session on demand: a cold start logs in
//! once, a forced expiry re-logs in once, a login slower than the fill lease is still one login,
//! 8 × 64 callers at a token's expiry cause one token request. Then the keyspace is scanned: the
//! password, the cookies and the tokens are nowhere in it, and a sealed session copied under
//! another account's key does not open (that account logs in itself).

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stitch::__private as s;
use stitch::auth::{ClientCredentials, CookieSession, Keyring, LoginRequest, Secret, TokenRequest};
use stitch::store::Store;
use stitch::{Endpoint, Runtime};
use stitch_tests::fleet::{self, answer, Redis, Worker};
use stitch_tests::{Reply, Seen, Upstream};

const BASE: &str = "http://declared.invalid";
const PASSWORD: &str = "PW-fleet-SECRET-7";
const CLIENT_SECRET: &str = "CS-fleet-SECRET-8";
const PROCESSES: usize = 8;
const SEAL: [u8; 32] = [42; 32];
const WORKER: &str = "STITCH_FLEET_AUTH_WORKER";

static SESSION_API: Endpoint = s::Endpoint::get("fleet_auth::session", "/api/me", &["/api/me"])
    .base_url(BASE)
    .auth("app");
static TOKEN_API: Endpoint = s::Endpoint::get("fleet_auth::token", "/tapi", &["/tapi"])
    .base_url(BASE)
    .auth("oauth");
const ALL: &[&Endpoint] = &[&SESSION_API, &TOKEN_API];

/// The upstream: `/login` (counted, optionally slow) sets `SID`; `/api/*` needs a valid `SID`;
/// `/token` (counted) issues `tok-<n>` living 2 s; `/tapi` needs an unexpired token.
#[derive(Default)]
struct App {
    logins: AtomicUsize,
    tokens: AtomicUsize,
    login_delay_ms: AtomicU64,
    sessions: Mutex<HashMap<String, String>>,
    issued: Mutex<HashMap<String, std::time::Instant>>,
}

const TOKEN_LIFETIME: u64 = 2;

impl App {
    fn answer(&self, seen: &Seen) -> Reply {
        match seen.path.as_str() {
            "/login" => {
                let form: HashMap<String, String> =
                    serde_urlencoded::from_bytes(&seen.body).unwrap_or_default();
                if form.get("password").map(String::as_str) != Some(PASSWORD) {
                    return Reply::status(403, "bad credentials");
                }
                let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
                let user = form.get("user").cloned().unwrap_or_default();
                let sid = format!("COOKIE-{n}-{user}");
                self.sessions.lock().unwrap().insert(sid.clone(), user);
                let delay = Duration::from_millis(self.login_delay_ms.load(Ordering::SeqCst));
                Reply::json(json!("welcome"))
                    .header("set-cookie", &format!("SID={sid}; Path=/; HttpOnly"))
                    .after(delay)
            }
            "/token" => {
                let n = self.tokens.fetch_add(1, Ordering::SeqCst) + 1;
                let token = format!("tok-{n}-VALUE");
                self.issued
                    .lock()
                    .unwrap()
                    .insert(token.clone(), std::time::Instant::now());
                Reply::json(json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": TOKEN_LIFETIME,
                }))
                .after(Duration::from_millis(100))
            }
            "/tapi" => {
                let token = seen
                    .header("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .unwrap_or("");
                let valid = self.issued.lock().unwrap().get(token).is_some_and(|at| {
                    at.elapsed() < Duration::from_secs(TOKEN_LIFETIME) + Duration::from_millis(500)
                });
                if valid {
                    Reply::json(json!({ "token": token }))
                } else {
                    Reply::status(401, "token expired")
                }
            }
            _ => {
                let cookie = seen.header("cookie").unwrap_or("");
                let user = cookie
                    .split("; ")
                    .find_map(|c| c.strip_prefix("SID="))
                    .and_then(|sid| self.sessions.lock().unwrap().get(sid).cloned());
                match user {
                    Some(user) => Reply::json(json!({ "user": user })),
                    None => Reply::status(401, "session expired"),
                }
            }
        }
    }
}

/// The worker: a runtime on the shared Redis (same principal key and seal key as every other
/// process), answering `session <n> <start µs>` / `token <n> <start µs>` with how many of `n`
/// concurrent calls succeeded.
async fn worker(spec: &str) {
    let f: Vec<&str> = spec.split('|').collect();
    let (redis, base, account, lease_ms) = (f[0], f[1], f[2], f[3]);
    let login = format!("{base}/login");
    let user = account.to_owned();
    let session = CookieSession::new(account, move |_| {
        Ok(LoginRequest::post(login.clone())
            .field("user", user.clone())
            .secret_field("password", Secret::new(PASSWORD)))
    })
    .lease_ttl(Duration::from_millis(lease_ms.parse().unwrap()));
    let oauth =
        ClientCredentials::new(format!("{base}/token"), "svc", CLIENT_SECRET).skew(Duration::ZERO);
    let rt = Runtime::builder()
        .base_url(base)
        .store(fleet::connect(redis).await)
        .principal_key([7; 32])
        .seal_key(1, SEAL)
        .auth_strategy("app", session)
        .auth_strategy("oauth", oauth)
        .build()
        .unwrap();
    let core = s::ClientCore::new(&rt, ALL).unwrap();
    answer("ready");
    let mut commands = fleet::commands();
    while let Some(line) = commands.recv().await {
        let w: Vec<&str> = line.split(' ').collect();
        let endpoint: &'static Endpoint = if w[0] == "token" {
            &TOKEN_API
        } else {
            &SESSION_API
        };
        let (n, start): (usize, u64) = (w[1].parse().unwrap(), w[2].parse().unwrap());
        tokio::time::sleep(Duration::from_micros(
            start.saturating_sub(fleet::unix_us()),
        ))
        .await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let core = core.clone();
            set.spawn(async move {
                s::call::<s::Json<Value>>(&core, s::RequestParts::new(endpoint)).await
            });
        }
        let (mut ok, mut error) = (0, String::from("-"));
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => error = e.to_string().replace(' ', "_"),
            }
        }
        answer(&format!("{ok} {error}"));
    }
}

struct Fleet {
    workers: Vec<Worker>,
}

impl Fleet {
    async fn start(redis: &Redis, up: &Upstream, account: &str, lease_ms: u64, n: usize) -> Fleet {
        let spec = format!("{}|{}|{account}|{lease_ms}", redis.url(), up.url());
        let mut workers: Vec<Worker> = (0..n)
            .map(|_| Worker::spawn("fleet_auth_worker", WORKER, &spec))
            .collect();
        for w in &mut workers {
            assert_eq!(w.recv().await, "ready");
        }
        Fleet { workers }
    }

    /// `n` concurrent calls in every worker, all starting at the same instant; every call must
    /// succeed.
    async fn round(&mut self, what: &str, n: usize) {
        let start = fleet::unix_us() + 300_000;
        for w in &mut self.workers {
            w.send(&format!("{what} {n} {start}"));
        }
        for w in &mut self.workers {
            let answer = w.recv().await;
            assert_eq!(answer, format!("{n} -"), "every {what} call succeeds");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_auth_worker() {
    if let Ok(spec) = std::env::var(WORKER) {
        worker(&spec).await;
    }
}

/// Every key of the store and every value, as text (strings read with `GET`; stitch writes no
/// other type for credentials, but the others are listed too).
fn keyspace(redis: &Redis) -> String {
    let mut out = String::new();
    for key in redis.cli(&["--scan"]).lines() {
        out.push_str(key);
        out.push('\n');
        let kind = redis.cli(&["TYPE", key]);
        let value = match kind.as_str() {
            "string" => redis.cli(&["--no-raw", "GET", key]),
            "hash" => redis.cli(&["HGETALL", key]),
            "zset" => redis.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
            "list" => redis.cli(&["LRANGE", key, "0", "-1"]),
            "set" => redis.cli(&["SMEMBERS", key]),
            other => format!("({other})"),
        };
        out.push_str(&value);
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_processes_log_in_once_fetch_one_token_and_keep_both_sealed() {
    let redis = Redis::start(&[]);
    let app = Arc::new(App::default());
    let script = app.clone();
    let up = Upstream::start(move |seen| script.answer(seen)).await;
    app.login_delay_ms.store(100, Ordering::SeqCst);
    // A 300 ms fill lease: the slow login below takes 1 s.
    let mut fleet = Fleet::start(&redis, &up, "svc", 300, PROCESSES).await;

    fleet.round("session", 16).await;
    assert_eq!(
        app.logins.load(Ordering::SeqCst),
        1,
        "cold start: one login for 8 processes"
    );
    fleet.round("session", 16).await;
    assert_eq!(
        app.logins.load(Ordering::SeqCst),
        1,
        "replayed, not logged in again"
    );

    app.sessions.lock().unwrap().clear();
    fleet.round("session", 16).await;
    assert_eq!(
        app.logins.load(Ordering::SeqCst),
        2,
        "forced expiry: one re-login"
    );

    app.login_delay_ms.store(1_000, Ordering::SeqCst);
    app.sessions.lock().unwrap().clear();
    fleet.round("session", 16).await;
    assert_eq!(
        app.logins.load(Ordering::SeqCst),
        3,
        "a 1 s login under a 300 ms lease: still one re-login (the lease is renewed)"
    );

    fleet.round("token", 64).await;
    assert_eq!(
        app.tokens.load(Ordering::SeqCst),
        1,
        "8 × 64 cold callers: one token"
    );
    tokio::time::sleep(Duration::from_millis(TOKEN_LIFETIME * 1000 + 100)).await;
    fleet.round("token", 64).await;
    assert_eq!(
        app.tokens.load(Ordering::SeqCst),
        2,
        "8 × 64 callers at expiry: one token request"
    );

    // Nothing in clear in the store: keys and values.
    let everything = keyspace(&redis);
    assert!(
        everything.contains("{s:svc}:jar2"),
        "the session is stored: {everything}"
    );
    assert!(
        everything.contains(":tok2"),
        "the token is stored: {everything}"
    );
    for needle in [
        PASSWORD,
        CLIENT_SECRET,
        "COOKIE-",
        "tok-1",
        "tok-2",
        "VALUE",
        "SID",
    ] {
        assert!(
            !everything.contains(needle),
            "`{needle}` found in Redis: {everything}"
        );
    }

    // A sealed session copied under another account's key does not open: that account logs in.
    let layout = stitch::store::keys::KeyLayout::default();
    let (from, to) = (
        layout.session_fill("svc").keys().value.to_owned(),
        layout.session_fill("eve").keys().value.to_owned(),
    );
    assert_eq!(redis.cli(&["COPY", &from, &to]), "1");
    let store = fleet::connect(&redis.url()).await;
    let copied = store.get(&to).await.unwrap().expect("copied");
    let ring = Keyring::new(1, SEAL);
    assert!(ring.open(&from, &copied).is_ok());
    assert_eq!(
        ring.open(&to, &copied),
        Err(stitch::auth::SealError::Unopenable)
    );
    app.login_delay_ms.store(0, Ordering::SeqCst);
    let mut eve = Fleet::start(&redis, &up, "eve", 300, 1).await;
    eve.round("session", 1).await;
    assert_eq!(
        app.logins.load(Ordering::SeqCst),
        4,
        "eve logged in rather than use svc's session"
    );
    let eves = app
        .sessions
        .lock()
        .unwrap()
        .values()
        .filter(|u| *u == "eve")
        .count();
    assert_eq!(eves, 1);
}

/// A principal's session and token are stored under keys naming the principal only by a hash
/// keyed with the runtime's `principal_key`: neither the name nor a plain hash of it (which a
/// reader could compute from a guess) is in any key, and another `principal_key` gives other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_keys_name_a_principal_only_by_a_keyed_hash() {
    const NAME: &str = "alice.private@example.com";
    let redis = Redis::start(&[]);
    let app = Arc::new(App::default());
    let script = app.clone();
    let up = Upstream::start(move |seen| script.answer(seen)).await;
    let member = |principal_key: [u8; 32]| {
        let (redis, base) = (redis.url(), up.url());
        async move {
            let login = format!("{base}/login");
            let session = CookieSession::new("svc", move |principal: Option<&str>| {
                Ok(LoginRequest::post(login.clone())
                    .field("user", principal.unwrap_or("svc"))
                    .secret_field("password", Secret::new(PASSWORD)))
            });
            let oauth = ClientCredentials::new(format!("{base}/token"), "svc", CLIENT_SECRET)
                .per_principal(|p: &str| Ok(TokenRequest::new().audience(format!("aud-{p}"))));
            let rt = Runtime::builder()
                .base_url(base)
                .store(fleet::connect(&redis).await)
                .principal_key(principal_key)
                .seal_key(1, SEAL)
                .auth_strategy("app", session)
                .auth_strategy("oauth", oauth)
                .build()
                .unwrap();
            let core = s::ClientCore::new(&rt, ALL)
                .unwrap()
                .with_principal(Some(NAME));
            let me = s::call::<s::Json<Value>>(&core, s::RequestParts::new(&SESSION_API))
                .await
                .unwrap();
            assert_eq!(me["user"], NAME);
            s::call::<s::Json<Value>>(&core, s::RequestParts::new(&TOKEN_API))
                .await
                .unwrap();
        }
    };
    member([7; 32]).await;
    let keys = redis.cli(&["--scan"]);
    let session_keys = |keys: &str| {
        keys.lines()
            .filter(|k| k.contains("{s:svc/") && k.ends_with(":jar2"))
            .count()
    };
    let token_keys = |keys: &str| keys.lines().filter(|k| k.ends_with(":tok2")).count();
    assert_eq!(session_keys(&keys), 1, "{keys}");
    assert_eq!(token_keys(&keys), 1, "{keys}");
    let plain = [
        blake3::hash(NAME.as_bytes()).to_hex().to_string(),
        blake3::Hasher::new_derive_key("stitch session principal v1")
            .update(NAME.as_bytes())
            .finalize()
            .to_hex()
            .to_string(),
        blake3::Hasher::new_derive_key("stitch principal v1")
            .update(NAME.as_bytes())
            .finalize()
            .to_hex()
            .to_string(),
    ];
    let everything = keyspace(&redis);
    for needle in [
        NAME,
        "alice",
        "private",
        "aud-",
        PASSWORD,
        CLIENT_SECRET,
        "COOKIE-",
        "VALUE",
    ] {
        assert!(
            !everything.contains(needle),
            "`{needle}` found in Redis: {everything}"
        );
    }
    for hash in &plain {
        assert!(
            !keys.contains(&hash[..16]),
            "a plain hash of the principal in {keys}"
        );
    }
    // Keyed: under another principal key the same principal is stored under other keys.
    member([9; 32]).await;
    let keys = redis.cli(&["--scan"]);
    assert_eq!(session_keys(&keys), 2, "{keys}");
    assert_eq!(token_keys(&keys), 2, "{keys}");
}

/// A session both members saw rejected is replaced by one compare-and-invalidate
/// (`fill_invalidate_if`): one re-login, and no stale-marker key left in the store (the marker
/// is only the fallback for stores without the verb).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_session_is_replaced_by_one_compare_and_invalidate() {
    let redis = Redis::start(&[]);
    let app = Arc::new(App::default());
    let script = app.clone();
    let up = Upstream::start(move |seen| script.answer(seen)).await;
    app.login_delay_ms.store(100, Ordering::SeqCst);
    let mut cores = Vec::new();
    for _ in 0..2 {
        let login = format!("{}/login", up.url());
        let session = CookieSession::new("svc", move |_| {
            Ok(LoginRequest::post(login.clone())
                .field("user", "svc")
                .secret_field("password", Secret::new(PASSWORD)))
        })
        // A marker would live as long as the lease: long enough to be seen below.
        .lease_ttl(Duration::from_secs(30));
        let rt = Runtime::builder()
            .base_url(up.url())
            .store(fleet::connect(&redis.url()).await)
            .principal_key([7; 32])
            .seal_key(1, SEAL)
            .auth_strategy("app", session)
            .build()
            .unwrap();
        const SESSION_ONLY: &[&Endpoint] = &[&SESSION_API];
        cores.push(s::ClientCore::new(&rt, SESSION_ONLY).unwrap());
    }
    let round = |cores: &[s::ClientCore]| {
        let calls: Vec<_> = cores
            .iter()
            .flat_map(|core| {
                (0..16).map(move |_| {
                    let core = core.clone();
                    tokio::spawn(async move {
                        s::call::<s::Json<Value>>(&core, s::RequestParts::new(&SESSION_API)).await
                    })
                })
            })
            .collect();
        async move {
            for c in calls {
                assert_eq!(c.await.unwrap().unwrap()["user"], "svc");
            }
        }
    };
    round(&cores).await;
    assert_eq!(app.logins.load(Ordering::SeqCst), 1);
    app.sessions.lock().unwrap().clear();
    round(&cores).await;
    assert_eq!(
        app.logins.load(Ordering::SeqCst),
        2,
        "32 rejections of one session in two processes: one re-login"
    );
    let keys = redis.cli(&["--scan"]);
    assert!(
        !keys.contains("stale"),
        "a stale marker was written: {keys}"
    );
}
