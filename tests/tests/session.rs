//! Cookie sessions against a real loopback upstream with a login endpoint that counts logins and
//! can expire every session on demand: one login at a cold start, exactly one re-login under 50
//! concurrent calls after a forced expiry, a soft wall (a `200` login page) logs in again, two
//! principals never share a session, a login's redirect keeps its cookie, cookies go only where
//! they belong, and neither the password nor the cookie shows in errors, `Debug` or TRACE output.
//! Then the same fleet guarantees between runtimes sharing one `MemoryStore` (the Redis fleet of
//! OS processes is `fleet_auth.rs`), and the build-time refusal of an unsealed shared store.
//!
//! Descriptors are built by hand (`auth("app")` is what the macro emits for `auth = "app"`).

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stitch::__private as s;
use stitch::auth::{CookieSession, CredentialOutage, Keyring, LoginRequest, Secret};
use stitch::store::{MemoryStore, Store};
use stitch::{Endpoint, Error, Runtime};
use stitch_tests::traces::{everything, Capture};
use stitch_tests::{Reply, Seen, Upstream};

const BASE: &str = "http://declared.invalid";
const PASSWORD: &str = "PW-hunter2-SECRET";

static API: Endpoint = s::Endpoint::get("session::api", "/api/me", &["/api/me"])
    .base_url(BASE)
    .auth("app");
static CACHED: Endpoint = s::Endpoint::get("session::cached", "/api/me", &["/api/me"])
    .base_url(BASE)
    .cache(s::cached::<Value>(s::ms(60_000), 1))
    .auth("app");
static OUTSIDE: Endpoint = s::Endpoint::get("session::outside", "/other", &["/other"])
    .base_url(BASE)
    .auth("app");

/// The upstream application: `/login` checks the password and sets `SID`; `/api/*` answers the
/// session's user while the session is valid, else `401` (or a `200` login page when the soft
/// wall is on).
#[derive(Default)]
struct App {
    logins: AtomicUsize,
    /// Valid session ids → user.
    sessions: Mutex<HashMap<String, String>>,
    soft_wall: AtomicBool,
    login_delay_ms: AtomicU64,
    /// Answer the login with `302` (the cookie on the redirect itself).
    redirect: AtomicBool,
    /// Extra `Set-Cookie` attributes.
    attributes: Mutex<String>,
    /// When set, every accepted `/api/*` call rotates the session: a new `SID` (with these extra
    /// attributes) in a `Set-Cookie`, and the old one no longer accepted.
    rolling: Mutex<Option<String>>,
    rolls: AtomicUsize,
    /// When set, every accepted `/api/*` call extends the session: the same `SID` again, with
    /// `Max-Age=3`.
    extending: AtomicBool,
}

impl App {
    fn expire_all(&self) {
        self.sessions.lock().unwrap().clear();
    }

    fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    fn answer(&self, seen: &Seen) -> Reply {
        if seen.path == "/login" {
            let form: HashMap<String, String> =
                serde_urlencoded::from_bytes(&seen.body).unwrap_or_default();
            if form.get("password").map(String::as_str) != Some(PASSWORD) {
                // An upstream quoting the request back: the password must not reach an error.
                let body = String::from_utf8_lossy(&seen.body).into_owned();
                return Reply::status(403, &format!("bad credentials in {body}"));
            }
            let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
            let user = form.get("user").cloned().unwrap_or_default();
            let sid = format!("COOKIE-{n}-{user}");
            self.sessions.lock().unwrap().insert(sid.clone(), user);
            let attributes = self.attributes.lock().unwrap().clone();
            let reply = if self.redirect.load(Ordering::SeqCst) {
                Reply::status(302, "").header("location", "/home")
            } else {
                Reply::json(json!("welcome"))
            };
            let delay = Duration::from_millis(self.login_delay_ms.load(Ordering::SeqCst));
            return reply
                .header(
                    "set-cookie",
                    &format!("SID={sid}; Path=/api; HttpOnly{attributes}"),
                )
                .after(delay);
        }
        if seen.path == "/home" {
            // Reached only if the login's redirect were followed.
            return Reply::json(json!("home"));
        }
        let cookie = seen.header("cookie").unwrap_or("");
        let user = cookie
            .split("; ")
            .find_map(|c| c.strip_prefix("SID="))
            .and_then(|sid| self.sessions.lock().unwrap().get(sid).cloned());
        match user {
            Some(user) => {
                let reply = Reply::json(json!({ "user": user, "cookie": cookie }));
                if self.extending.load(Ordering::SeqCst) {
                    let sid = cookie
                        .split("; ")
                        .find_map(|c| c.strip_prefix("SID="))
                        .unwrap_or_default();
                    return reply.header(
                        "set-cookie",
                        &format!("SID={sid}; Path=/api; HttpOnly; Max-Age=3"),
                    );
                }
                let Some(attributes) = self.rolling.lock().unwrap().clone() else {
                    return reply;
                };
                let n = self.rolls.fetch_add(1, Ordering::SeqCst) + 1;
                let rolled = format!("ROLLED-{n}-{user}");
                let mut sessions = self.sessions.lock().unwrap();
                sessions.retain(|_, u| *u != user);
                sessions.insert(rolled.clone(), user);
                reply.header(
                    "set-cookie",
                    &format!("SID={rolled}; Path=/api; HttpOnly{attributes}"),
                )
            }
            None if self.soft_wall.load(Ordering::SeqCst) => {
                let mut r = Reply::bytes(b"<form id=\"login\"><input name=user></form>");
                r.headers.push(("content-type", "text/html".into()));
                r
            }
            None => Reply::status(401, "session expired"),
        }
    }
}

async fn app() -> (Arc<App>, Upstream) {
    let app = Arc::new(App::default());
    let script = app.clone();
    let up = Upstream::start(move |seen| script.answer(seen)).await;
    (app, up)
}

/// The strategy: logs in as the bound principal (or `svc`) with the password.
fn session(up: &Upstream) -> CookieSession {
    let login = format!("{}/login", up.url());
    let password = Secret::new(PASSWORD);
    CookieSession::new("app", move |principal: Option<&str>| {
        Ok(LoginRequest::post(login.clone())
            .field("user", principal.unwrap_or("svc"))
            .secret_field("password", password.clone()))
    })
}

fn runtime(up: &Upstream, session: CookieSession) -> Runtime {
    Runtime::builder()
        .base_url(up.url())
        .auth_strategy("app", session)
        .build()
        .unwrap()
}

fn client(rt: &Runtime) -> s::ClientCore {
    const ALL: &[&Endpoint] = &[&API, &CACHED, &OUTSIDE];
    s::ClientCore::new(rt, ALL).unwrap()
}

async fn me(core: &s::ClientCore) -> stitch::Result<Value> {
    s::call::<s::Json<Value>>(core, s::RequestParts::new(&API)).await
}

async fn many(core: &s::ClientCore, n: usize) -> Vec<stitch::Result<Value>> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let core = core.clone();
            tokio::spawn(async move { me(&core).await })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_start_logs_in_once_and_a_forced_expiry_relogs_in_exactly_once() {
    let (app, up) = app().await;
    app.login_delay_ms.store(50, Ordering::SeqCst);
    let core = client(&runtime(&up, session(&up)));
    for r in many(&core, 50).await {
        assert_eq!(r.unwrap()["user"], "svc");
    }
    assert_eq!(app.logins(), 1, "50 cold callers, one login");
    app.expire_all();
    for r in many(&core, 50).await {
        assert_eq!(
            r.unwrap()["user"],
            "svc",
            "every call redone with the new session"
        );
    }
    assert_eq!(
        app.logins(),
        2,
        "50 rejections of one session, one re-login"
    );
    for r in many(&core, 10).await {
        assert!(r.unwrap()["cookie"]
            .as_str()
            .unwrap()
            .contains("COOKIE-2-svc"));
    }
    assert_eq!(app.logins(), 2);
}

#[tokio::test]
async fn a_soft_wall_logs_in_again_and_the_redo_is_served() {
    let (app, up) = app().await;
    app.soft_wall.store(true, Ordering::SeqCst);
    let wall = |r: &stitch::auth::AuthResponse<'_>| r.body().starts_with(b"<form id=\"login\"");
    let core = client(&runtime(&up, session(&up).soft_wall(wall)));
    assert_eq!(me(&core).await.unwrap()["user"], "svc");
    app.expire_all();
    let redone = me(&core).await.unwrap();
    assert!(redone["cookie"].as_str().unwrap().contains("COOKIE-2-svc"));
    assert_eq!(app.logins(), 2);
    // A wall that stays after a fresh login is the strategy's error, after one re-login.
    let (stuck, up_stuck) = self::app().await;
    let wall_up = Upstream::start({
        let stuck = stuck.clone();
        move |seen| {
            if seen.path == "/login" {
                stuck.answer(seen)
            } else {
                let mut r = Reply::bytes(b"<form id=\"login\"></form>");
                r.headers.push(("content-type", "text/html".into()));
                r
            }
        }
    })
    .await;
    let core = client(&runtime(&wall_up, session(&wall_up).soft_wall(wall)));
    let error = me(&core).await.unwrap_err();
    assert!(
        matches!(&error, Error::Auth { strategy, .. } if strategy == "app"),
        "{error:?}"
    );
    assert_eq!(
        stuck.logins(),
        2,
        "the cold login, then one re-login for the wall"
    );
    drop(up_stuck);
    // Without the predicate the wall is a `200` the stitch cannot decode.
    let (app, up) = self::app().await;
    app.soft_wall.store(true, Ordering::SeqCst);
    let core = client(&runtime(&up, session(&up)));
    me(&core).await.unwrap();
    app.expire_all();
    let error = me(&core).await.unwrap_err();
    assert!(
        matches!(error, Error::UnexpectedContentType { .. }),
        "{error:?}"
    );
    assert_eq!(app.logins(), 1);
}

#[tokio::test]
async fn configured_statuses_relogin_and_others_do_not() {
    let (app, up) = app().await;
    let up403 = Upstream::start({
        let app = app.clone();
        move |seen| {
            let reply = app.answer(seen);
            if reply.status == 401 {
                Reply::status(403, "forbidden")
            } else {
                reply
            }
        }
    })
    .await;
    let core = client(&runtime(&up403, session(&up403).relogin_on(&[403])));
    me(&core).await.unwrap();
    app.expire_all();
    me(&core).await.unwrap();
    assert_eq!(app.logins(), 2, "403 is configured: re-login");
    // The default (401 only): a 403 is the call's error.
    let core = client(&runtime(&up403, session(&up403)));
    me(&core).await.unwrap();
    app.expire_all();
    let error = me(&core).await.unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(403));
    drop(up);
}

#[tokio::test]
async fn two_principals_never_share_a_session_nor_a_cache_entry() {
    let (app, up) = app().await;
    let core = client(&runtime(&up, session(&up)));
    let alice = core.with_principal(Some("alice"));
    let bob = core.with_principal(Some("bob"));
    let a = me(&alice).await.unwrap();
    let b = me(&bob).await.unwrap();
    assert_eq!(a["user"], "alice");
    assert_eq!(b["user"], "bob");
    assert_eq!(app.logins(), 2, "one login per principal");
    let cached = |core: s::ClientCore| async move {
        s::call_cached::<s::Json<Value>>(&core, s::RequestParts::new(&CACHED)).await
    };
    assert_eq!(cached(alice.clone()).await.unwrap()["user"], "alice");
    assert_eq!(cached(bob.clone()).await.unwrap()["user"], "bob");
    // Expiring alice's session re-logs alice in only.
    app.sessions
        .lock()
        .unwrap()
        .retain(|_, user| user != "alice");
    assert_eq!(me(&alice).await.unwrap()["user"], "alice");
    assert_eq!(me(&bob).await.unwrap()["user"], "bob");
    assert_eq!(app.logins(), 3);
}

#[tokio::test]
async fn a_login_redirect_keeps_its_cookie_and_cookies_go_only_where_they_belong() {
    let (app, up) = app().await;
    app.redirect.store(true, Ordering::SeqCst);
    let core = client(&runtime(&up, session(&up)));
    assert_eq!(me(&core).await.unwrap()["user"], "svc");
    assert_eq!(
        up.seen().iter().filter(|s| s.path == "/home").count(),
        0,
        "the login's redirect was not followed: its Set-Cookie was captured"
    );
    // `Path=/api`: not sent to `/other`.
    s::call::<s::Json<Value>>(&core, s::RequestParts::new(&OUTSIDE))
        .await
        .unwrap_err();
    let other = up.seen().into_iter().find(|s| s.path == "/other").unwrap();
    assert_eq!(other.header("cookie"), None);
    // Another host (`localhost` is not `127.0.0.1`): nothing sent, whatever the port.
    let (_app2, up2) = self::app().await;
    let elsewhere = up2.url().replace("127.0.0.1", "localhost");
    let rt = Runtime::builder()
        .base_url(elsewhere)
        .auth_strategy("app", session(&up))
        .build()
        .unwrap();
    let _ = me(&client(&rt)).await;
    assert!(up2.seen().iter().all(|s| s.header("cookie").is_none()));
    // An expired cookie (`Max-Age`) is not replayed: the next call logs in first.
    let (app, up) = self::app().await;
    *app.attributes.lock().unwrap() = "; Max-Age=1".into();
    let core = client(&runtime(&up, session(&up)));
    me(&core).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    me(&core).await.unwrap();
    assert_eq!(app.logins(), 2);
    assert_eq!(
        up.seen().iter().filter(|s| s.path == "/api/me").count(),
        2,
        "no call was sent with the expired cookie"
    );
}

/// Current-thread runtime: the thread-local subscriber sees every task.
#[tokio::test]
async fn the_password_and_the_cookie_never_show_in_errors_debug_or_traces() {
    let (capture, _guard) = Capture::on_this_thread();
    let (app, up) = app().await;
    let mut shown = String::new();
    // A session that works, then an upstream that quotes the cookie back in a 500.
    let core = client(&runtime(&up, session(&up)));
    let ok = me(&core).await.unwrap();
    let cookie = ok["cookie"].as_str().unwrap().to_owned();
    assert!(cookie.contains("COOKIE-1-svc"));
    // A session the upstream rolls: the rolled cookie is as secret as the first.
    roll(&app, Some(""));
    me(&core).await.unwrap();
    roll(&app, None);
    assert!(me(&core).await.unwrap()["cookie"]
        .as_str()
        .unwrap()
        .contains("ROLLED-1-svc"));
    let echo = Upstream::start(|seen| {
        Reply::status(
            500,
            &format!("your cookie was {}", seen.header("cookie").unwrap_or("")),
        )
    })
    .await;
    let rt = Runtime::builder()
        .base_url(echo.url())
        .auth_strategy("app", session(&up))
        .build()
        .unwrap();
    let error = me(&client(&rt)).await.unwrap_err();
    shown.push_str(&everything(&error));
    // A refused login that quotes the password back.
    let wrong = {
        let login = format!("{}/login", up.url());
        CookieSession::new("app", move |_| {
            Ok(LoginRequest::post(login.clone())
                .field("user", "svc")
                .secret_field("password", Secret::new("PW-wrong-SECRET")))
        })
    };
    let error = me(&client(&runtime(&up, wrong.clone()))).await.unwrap_err();
    let Error::Auth { status, body, .. } = &error else {
        panic!("a refused login is an auth error: {error:?}");
    };
    assert_eq!(status.map(|s| s.as_u16()), Some(403));
    assert!(body.contains("bad credentials"), "{body}");
    shown.push_str(&everything(&error));
    shown.push_str(&format!("{:?}\n{:?}\n{:?}\n", session(&up), wrong, rt));
    let traced = capture.text();
    // The capture must have seen stitch's own tracing of these calls (else the scan below proves
    // nothing): the call's span, or stitch's events. Either may be missing alone: tracing caches
    // a callsite's interest process-wide, and a callsite first hit by a parallel test thread
    // with no subscriber can stay disabled for this thread's scoped one.
    assert!(
        traced.contains("session::api") || traced.contains("session=app"),
        "the capture saw the calls: {traced}"
    );
    for needle in [
        PASSWORD,
        "PW-wrong-SECRET",
        "COOKIE-1-svc",
        "COOKIE-2-svc",
        "ROLLED-1-svc",
    ] {
        assert!(!shown.contains(needle), "{needle} shown: {shown}");
        assert!(!traced.contains(needle), "{needle} traced: {traced}");
    }
    assert!(app.logins() >= 1);
}

// ---- one login per fleet, between runtimes sharing one MemoryStore ----

const PRINCIPAL_KEY: [u8; 32] = [5; 32];
const SEAL: [u8; 32] = [6; 32];

fn member(up: &Upstream, store: &MemoryStore, session: CookieSession) -> Runtime {
    Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .local_throttles()
        .principal_key(PRINCIPAL_KEY)
        .seal_key(1, SEAL)
        .auth_strategy("app", session)
        .build()
        .unwrap()
}

async fn fleet_round(cores: &[s::ClientCore], per_member: usize) {
    let mut calls = Vec::new();
    for core in cores {
        for _ in 0..per_member {
            let core = core.clone();
            calls.push(tokio::spawn(async move { me(&core).await }));
        }
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap()["user"], "svc");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_runtimes_on_one_store_log_in_once_cold_and_once_after_expiry() {
    let (app, up) = app().await;
    app.login_delay_ms.store(50, Ordering::SeqCst);
    let store = MemoryStore::new(1_000);
    let cores: Vec<_> = (0..8)
        .map(|_| client(&member(&up, &store, session(&up))))
        .collect();
    fleet_round(&cores, 8).await;
    assert_eq!(app.logins(), 1, "8 runtimes × 8 cold calls: one login");
    app.expire_all();
    fleet_round(&cores, 8).await;
    assert_eq!(app.logins(), 2, "one re-login for the whole fleet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_slower_than_the_lease_is_still_one_login() {
    let (app, up) = app().await;
    // The lease is 300 ms, the login takes 1.2 s: the leader renews every 100 ms (a renewal
    // late by 200 ms on a loaded machine would let a second leader in).
    app.login_delay_ms.store(1_200, Ordering::SeqCst);
    let store = MemoryStore::new(1_000);
    let cores: Vec<_> = (0..8)
        .map(|_| {
            let s = session(&up).lease_ttl(Duration::from_millis(300));
            client(&member(&up, &store, s))
        })
        .collect();
    fleet_round(&cores, 4).await;
    assert_eq!(app.logins(), 1);
}

#[tokio::test]
async fn the_session_is_sealed_in_the_store_and_does_not_open_under_another_key() {
    let (app, up) = app().await;
    let store = MemoryStore::new(1_000);
    let core = client(&member(&up, &store, session(&up)));
    let cookie = me(&core).await.unwrap()["cookie"]
        .as_str()
        .unwrap()
        .to_owned();
    let layout = stitch::store::keys::KeyLayout::default();
    let key = layout.session_fill("app").keys().value.to_owned();
    let sealed = store
        .get(&key)
        .await
        .unwrap()
        .expect("the session is in the store");
    let text = String::from_utf8_lossy(&sealed);
    assert!(!text.contains("COOKIE-1"), "sealed, not in clear: {text}");
    assert!(cookie.contains("COOKIE-1-svc"));
    let ring = Keyring::new(1, SEAL);
    assert!(String::from_utf8_lossy(&ring.open(&key, &sealed).unwrap()).contains("COOKIE-1-svc"));
    // Copied under another account's key: refused by the seal, so that account logs in itself.
    let other = layout.session_fill("other").keys().value.to_owned();
    assert_eq!(
        ring.open(&other, &sealed),
        Err(stitch::auth::SealError::Unopenable)
    );
    store
        .set(&other, sealed, Duration::from_secs(60))
        .await
        .unwrap();
    let login = format!("{}/login", up.url());
    let password = Secret::new(PASSWORD);
    let other_session = CookieSession::new("other", move |_| {
        Ok(LoginRequest::post(login.clone())
            .field("user", "other")
            .secret_field("password", password.clone()))
    });
    let core = client(&member(&up, &store, other_session));
    assert_eq!(
        me(&core).await.unwrap()["user"],
        "other",
        "the planted session was not used"
    );
    assert_eq!(app.logins(), 2);
}

#[tokio::test]
async fn a_shared_store_without_a_seal_key_is_refused_unless_plaintext_is_chosen() {
    let (_app, up) = app().await;
    let store = MemoryStore::new(10);
    let base = || {
        Runtime::builder()
            .store(store.clone())
            .local_throttles()
            .principal_key(PRINCIPAL_KEY)
            .auth_strategy("app", session(&up))
    };
    let error = base().build().unwrap_err().to_string();
    assert!(
        error.contains("seal_key") && error.contains("store_credentials_in_plaintext"),
        "{error}"
    );
    base().seal_key(1, SEAL).build().unwrap();
    base().store_credentials_in_plaintext().build().unwrap();
    let both = base()
        .seal_key(1, SEAL)
        .store_credentials_in_plaintext()
        .build();
    assert!(both.is_err());
    let two_current = base().seal_key(1, SEAL).seal_key(2, SEAL).build();
    assert!(two_current
        .unwrap_err()
        .to_string()
        .contains("retired_seal_key"));
    // No store: nothing to seal, nothing refused.
    runtime(&up, session(&up));
}

#[tokio::test]
async fn with_the_store_unreachable_the_default_waits_then_fails_and_per_instance_logs_in() {
    /// A store that never answers (every verb fails at once).
    #[derive(Clone)]
    struct Down;
    impl Store for Down {
        fn get<'a>(&'a self, _: &'a str) -> stitch::store::StoreFuture<'a, Option<bytes::Bytes>> {
            Box::pin(async { Err(stitch::store::StoreError::unavailable("get", "down")) })
        }
        fn set<'a>(
            &'a self,
            _: &'a str,
            _: bytes::Bytes,
            _: Duration,
        ) -> stitch::store::StoreFuture<'a, ()> {
            Box::pin(async { Err(stitch::store::StoreError::unavailable("set", "down")) })
        }
        fn delete<'a>(&'a self, _: &'a str) -> stitch::store::StoreFuture<'a, bool> {
            Box::pin(async { Err(stitch::store::StoreError::unavailable("delete", "down")) })
        }
        fn capabilities(&self) -> stitch::store::Verbs {
            stitch::store::Verbs::all()
        }
    }
    let (app, up) = app().await;
    let build = |session: CookieSession| {
        Runtime::builder()
            .base_url(up.url())
            .store(Down)
            .local_throttles()
            .local_circuits()
            .principal_key(PRINCIPAL_KEY)
            .seal_key(1, SEAL)
            .auth_strategy("app", session)
            .build()
            .unwrap()
    };
    let waiting = session(&up).store_outage(CredentialOutage::Wait(Duration::from_millis(600)));
    let started = tokio::time::Instant::now();
    let error = me(&client(&build(waiting))).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(100), "it waited");
    let Error::Auth { reason, .. } = &error else {
        panic!("a typed auth error: {error:?}");
    };
    assert!(reason.contains("unreachable"), "{reason}");
    assert_eq!(app.logins(), 0, "no login raced the fleet");
    let alone = session(&up).store_outage(CredentialOutage::LoginPerInstance);
    let core = client(&build(alone));
    assert_eq!(me(&core).await.unwrap()["user"], "svc");
    assert_eq!(app.logins(), 1);
    assert_eq!(
        me(&core).await.unwrap()["user"],
        "svc",
        "kept in the process"
    );
    assert_eq!(app.logins(), 1);
}

// ---- sessions the upstream renews (rolling cookies) ----

fn cookie(value: &Value) -> String {
    value["cookie"].as_str().unwrap_or_default().to_owned()
}

fn roll(app: &App, attributes: Option<&str>) {
    *app.rolling.lock().unwrap() = attributes.map(str::to_owned);
}

#[tokio::test]
async fn a_session_cookie_rolled_on_an_accepted_response_is_replayed_instead_of_the_old_one() {
    let (app, up) = app().await;
    let core = client(&runtime(&up, session(&up)));
    assert!(cookie(&me(&core).await.unwrap()).contains("SID=COOKIE-1-svc"));
    // Every response now rotates the session and the upstream forgets the previous cookie: each
    // call must send the cookie the previous response set.
    roll(&app, Some(""));
    for n in 1..=5 {
        let sent = cookie(&me(&core).await.unwrap());
        let expected = if n == 1 {
            "SID=COOKIE-1-svc".to_owned()
        } else {
            format!("SID=ROLLED-{}-svc", n - 1)
        };
        assert!(sent.contains(&expected), "call {n} sent {sent}");
    }
    roll(&app, None);
    assert!(cookie(&me(&core).await.unwrap()).contains("SID=ROLLED-5-svc"));
    assert_eq!(
        app.logins(),
        1,
        "never logged in again: each rolled cookie was taken"
    );
    assert!(
        !app.sessions.lock().unwrap().contains_key("COOKIE-1-svc"),
        "the upstream rejects the old cookie"
    );
}

#[tokio::test]
async fn a_rolled_cookie_honours_domain_and_expiry_and_an_extension_keeps_the_session() {
    let (app, up) = app().await;
    let core = client(&runtime(&up, session(&up)));
    me(&core).await.unwrap();
    // Rolled for another domain: refused (and the upstream has dropped COOKIE-1 meanwhile, so
    // the next call is rejected and logs in again).
    roll(&app, Some("; Domain=other.example"));
    me(&core).await.unwrap();
    roll(&app, None);
    assert!(cookie(&me(&core).await.unwrap()).contains("SID=COOKIE-2-svc"));
    assert_eq!(app.logins(), 2);
    assert!(up
        .seen()
        .iter()
        .all(|s| s.header("cookie").is_none_or(|c| !c.contains("ROLLED-1"))));
    // Rolled with `Max-Age=1`: replayed while it lives, never after.
    roll(&app, Some("; Max-Age=1"));
    me(&core).await.unwrap();
    roll(&app, None);
    assert!(cookie(&me(&core).await.unwrap()).contains("SID=ROLLED-2-svc"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(cookie(&me(&core).await.unwrap()).contains("SID=COOKIE-3-svc"));
    assert_eq!(app.logins(), 3);
    let carried = |needle: &str| {
        up.seen()
            .iter()
            .filter(|s| s.header("cookie").is_some_and(|c| c.contains(needle)))
            .count()
    };
    assert_eq!(
        carried("ROLLED-2"),
        1,
        "the expired rolled cookie was not sent"
    );
    // An extension (the same value, a later expiry) keeps the session past the first expiry.
    let (app, up) = self::app().await;
    *app.attributes.lock().unwrap() = "; Max-Age=1".into();
    app.extending.store(true, Ordering::SeqCst);
    let core = client(&runtime(&up, session(&up)));
    me(&core).await.unwrap();
    me(&core).await.unwrap(); // extended to 3 s from now
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(cookie(&me(&core).await.unwrap()).contains("SID=COOKIE-1-svc"));
    assert_eq!(
        app.logins(),
        1,
        "the extended session was kept past its first Max-Age"
    );
}

#[tokio::test]
async fn a_rolled_session_reaches_the_fleet_sealed_and_other_members_use_it() {
    let (app, up) = app().await;
    let store = MemoryStore::new(1_000);
    let a = client(&member(&up, &store, session(&up)));
    let b = client(&member(&up, &store, session(&up)));
    assert!(cookie(&me(&a).await.unwrap()).contains("SID=COOKIE-1-svc"));
    assert!(cookie(&me(&b).await.unwrap()).contains("SID=COOKIE-1-svc"));
    assert_eq!(app.logins(), 1);
    roll(&app, Some(""));
    me(&a).await.unwrap();
    roll(&app, None);
    // `b` still holds COOKIE-1, which the upstream now rejects: its re-login finds the fleet's
    // rolled session in the store and logs nothing in.
    assert!(cookie(&me(&b).await.unwrap()).contains("SID=ROLLED-1-svc"));
    assert!(cookie(&me(&a).await.unwrap()).contains("SID=ROLLED-1-svc"));
    // A member starting now takes it from the store too.
    let c = client(&member(&up, &store, session(&up)));
    assert!(cookie(&me(&c).await.unwrap()).contains("SID=ROLLED-1-svc"));
    assert_eq!(
        app.logins(),
        1,
        "one login for the fleet, the renewal shared"
    );
    let key = stitch::store::keys::KeyLayout::default()
        .session_fill("app")
        .keys()
        .value
        .to_owned();
    let sealed = store.get(&key).await.unwrap().expect("stored");
    assert!(
        !String::from_utf8_lossy(&sealed).contains("ROLLED"),
        "sealed"
    );
    let opened = Keyring::new(1, SEAL).open(&key, &sealed).unwrap();
    assert!(String::from_utf8_lossy(&opened).contains("ROLLED-1-svc"));
}

#[tokio::test]
async fn the_sessions_of_many_principals_are_bounded_by_max_principals() {
    let (app, up) = app().await;
    let core = client(&runtime(&up, session(&up).max_principals(2)));
    let principals: Vec<_> = (0..10)
        .map(|i| core.with_principal(Some(format!("user-{i}").as_str())))
        .collect();
    for p in &principals {
        me(p).await.unwrap();
    }
    assert_eq!(app.logins(), 10);
    for p in &principals {
        me(p).await.unwrap();
    }
    let logins = app.logins();
    assert!(
        logins >= 18,
        "{logins} logins: more than 2 sessions were kept"
    );
    // The default bound keeps them all.
    let (app, up) = self::app().await;
    let core = client(&runtime(&up, session(&up)));
    for _ in 0..2 {
        for i in 0..10 {
            me(&core.with_principal(Some(format!("user-{i}").as_str())))
                .await
                .unwrap();
        }
    }
    assert_eq!(app.logins(), 10);
}
