//! OAuth2 client credentials against a real OAuth2 server (the npm package `oauth2-mock-server`,
//! installed by `scripts/test`) and against a counting token endpoint on the loopback upstream
//! for exact counts: one token request for 64 calls at expiry, refresh-ahead without waiting, a
//! forced refresh on `401` only for the rejected token, `Error::Auth` on a failed token request.

use base64::Engine as _;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch::__private as s;
use stitch::auth::{ClientCredentials, Secret, TokenRequest};
use stitch::{Endpoint, Error, Runtime};
use stitch_tests::{Reply, Seen, Upstream};

static API: Endpoint = s::Endpoint::get("oauth2::api", "/api", &["/api"])
    .base_url("http://declared.invalid")
    .auth("acme");

const APIS: &[&Endpoint] = &[&API];

fn client(rt: &Runtime) -> s::ClientCore {
    s::ClientCore::new(rt, APIS).unwrap()
}

/// One call of `API`; returns the `authorization` header the upstream saw (it echoes it).
async fn call(core: &s::ClientCore) -> stitch::Result<String> {
    s::call::<s::Json<String>>(core, s::RequestParts::new(&API)).await
}

/// `oauth2-mock-server` on a free loopback port, stopped on drop.
struct MockServer {
    child: Child,
    url: String,
}

impl MockServer {
    fn start() -> Self {
        let dir = std::env::var_os("OAUTH2_MOCK_SERVER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/oauth2-mock")
            });
        let cli = dir.join("node_modules/oauth2-mock-server/dist/oauth2-mock-server.mjs");
        assert!(
            cli.exists(),
            "oauth2-mock-server is not installed at {}: run `bash scripts/test`, or \
             `npm install --prefix target/oauth2-mock oauth2-mock-server@8` (needs Node 20)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(&cli)
            .args(["-a", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("`node` runs (Node 20 is needed for oauth2-mock-server)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("oauth2-mock-server printed its address")
                .expect("read");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_owned();
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        MockServer { child, url }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The claims of a JWT (its middle part, base64url).
fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

fn echo_authorization(seen: &Seen) -> Reply {
    Reply::json(json!(seen.header("authorization").unwrap_or("none")))
}

#[tokio::test]
async fn a_real_oauth2_server_issues_the_token_sent_as_bearer_and_fetched_once() {
    let server = MockServer::start();
    let up = Upstream::start(echo_authorization).await;
    for basic in [false, true] {
        let mut oauth = ClientCredentials::new(format!("{}/token", server.url), "svc", "SECRET-1")
            .scope("orders:read")
            .param("aud", "https://api.example.com");
        if basic {
            oauth = oauth.basic_auth();
        }
        let rt = Runtime::builder()
            .base_url(up.url())
            .auth_strategy("acme", oauth)
            .build()
            .unwrap();
        let core = client(&rt);
        let first = call(&core).await.unwrap();
        let token = first.strip_prefix("Bearer ").expect("a bearer token");
        let claims = claims(token);
        assert_eq!(claims["scope"], "orders:read", "{claims}");
        assert_eq!(claims["aud"], "https://api.example.com", "{claims}");
        let port = server.url.rsplit(':').next().unwrap();
        assert!(
            claims["iss"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{port}")),
            "issued by this server: {claims}"
        );
        // The token lives an hour: the next calls reuse it.
        assert_eq!(call(&core).await.unwrap(), first);
    }
}

/// A token endpoint at `/token` counting its requests (`tok-<n>`, living `lifetime` seconds,
/// answering after `delay`); every other path echoes the `authorization` header, except that
/// tokens listed in `revoked` get a `401`.
async fn counting(
    lifetime: u64,
    delay: Duration,
    revoked: &'static [&'static str],
) -> (Upstream, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    let up = Upstream::start(move |seen| {
        if seen.path == "/token" {
            let n = n.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::json(json!({
                "access_token": format!("tok-{n}"),
                "token_type": "Bearer",
                "expires_in": lifetime,
            }))
            .after(delay);
        }
        let auth = seen.header("authorization").unwrap_or("none");
        if revoked.iter().any(|t| auth == format!("Bearer {t}")) {
            return Reply::status(401, "revoked");
        }
        echo_authorization(seen)
    })
    .await;
    (up, count)
}

fn runtime(up: &Upstream, oauth: ClientCredentials) -> Runtime {
    Runtime::builder()
        .base_url(up.url())
        .auth_strategy("acme", oauth)
        .build()
        .unwrap()
}

#[tokio::test]
async fn sixty_four_calls_at_expiry_cause_exactly_one_token_request() {
    let (up, tokens) = counting(1, Duration::from_millis(100), &[]).await;
    let oauth =
        ClientCredentials::new(format!("{}/token", up.url()), "svc", "S").skew(Duration::ZERO);
    let core = client(&runtime(&up, oauth));
    assert_eq!(call(&core).await.unwrap(), "Bearer tok-1");
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let core = core.clone();
            tokio::spawn(async move { call(&core).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "Bearer tok-2");
    }
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        2,
        "one token request at expiry"
    );
}

#[tokio::test]
async fn refresh_ahead_fetches_in_the_background_while_callers_use_the_valid_token() {
    // Lifetime 2 s, skew 1 s: the next token is fetched from 1 s on, and takes 400 ms to come.
    let (up, tokens) = counting(2, Duration::from_millis(400), &[]).await;
    let oauth = ClientCredentials::new(format!("{}/token", up.url()), "svc", "S")
        .skew(Duration::from_secs(1));
    let core = client(&runtime(&up, oauth));
    assert_eq!(call(&core).await.unwrap(), "Bearer tok-1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let core = core.clone();
            tokio::spawn(async move { call(&core).await })
        })
        .collect();
    for c in calls {
        assert_eq!(
            c.await.unwrap().unwrap(),
            "Bearer tok-1",
            "the valid token is used"
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(350),
        "callers did not wait for the 400 ms token request: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(tokens.load(Ordering::SeqCst), 2, "one background refresh");
    assert_eq!(call(&core).await.unwrap(), "Bearer tok-2");
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_401_forces_one_refresh_of_the_rejected_token_only() {
    let (up, tokens) = counting(3600, Duration::from_millis(50), &["tok-1"]).await;
    let oauth = ClientCredentials::new(format!("{}/token", up.url()), "svc", "S");
    let core = client(&runtime(&up, oauth));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let core = core.clone();
            tokio::spawn(async move { call(&core).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "Bearer tok-2");
    }
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        2,
        "one fetch for 16 cold callers, one refresh for 16 rejections of tok-1"
    );
    assert_eq!(call(&core).await.unwrap(), "Bearer tok-2");
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_token_request_is_an_auth_error_with_the_status_and_a_redacted_body() {
    let up = Upstream::start(|seen| {
        if seen.path == "/token" {
            Reply::status(
                401,
                r#"{"error":"invalid_client","error_description":"secret CS-SECRET-9 is wrong","access_token":"LEAK-1"}"#,
            )
        } else {
            echo_authorization(seen)
        }
    })
    .await;
    let oauth = ClientCredentials::new(format!("{}/token", up.url()), "svc", "CS-SECRET-9");
    let core = client(&runtime(&up, oauth));
    let error = call(&core).await.unwrap_err();
    let Error::Auth {
        strategy,
        status,
        body,
        ..
    } = &error
    else {
        panic!("expected an auth error, got {error:?}");
    };
    assert_eq!(strategy, "acme");
    assert_eq!(status.map(|s| s.as_u16()), Some(401));
    assert!(body.contains("invalid_client"), "{body}");
    let shown = format!("{error}\n{error:?}");
    for secret in ["CS-SECRET-9", "LEAK-1"] {
        assert!(!shown.contains(secret), "{secret}: {shown}");
    }
    assert_eq!(error.error_type(), "auth");
    assert_eq!(up.hits(), 1, "the API was never called without a token");
}

#[tokio::test]
async fn the_principal_is_the_client_not_the_token() {
    static CACHED: Endpoint = s::Endpoint::get("oauth2::cached", "/api", &["/api"])
        .base_url("http://declared.invalid")
        .cache(s::cached::<String>(s::ms(60_000), 1))
        .auth("acme");
    let (up, tokens) = counting(3600, Duration::ZERO, &[]).await;
    let store = stitch::store::MemoryStore::new(100);
    let fleet = |client_id: &str| {
        Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .local_throttles()
            .principal_key([7; 32])
            .seal_key(1, [8; 32])
            .auth_strategy(
                "acme",
                ClientCredentials::new(format!("{}/token", up.url()), client_id, "S"),
            )
            .build()
            .unwrap()
    };
    let get = |rt: Runtime| async move {
        const CACHEDS: &[&Endpoint] = &[&CACHED];
        let core = s::ClientCore::new(&rt, CACHEDS).unwrap();
        s::call_cached::<s::Json<String>>(&core, s::RequestParts::new(&CACHED)).await
    };
    // Two processes of one client share the entry (and, through the store, the token).
    assert_eq!(get(fleet("svc")).await.unwrap(), "Bearer tok-1");
    // The store write runs behind the call.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(fleet("svc")).await.unwrap(),
        "Bearer tok-1",
        "served from the store"
    );
    // Another client is another principal.
    assert_eq!(get(fleet("other")).await.unwrap(), "Bearer tok-2");
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_credentials_go_in_the_form_body_or_a_basic_header_never_both() {
    for basic in [false, true] {
        let (up, _) = counting(3600, Duration::ZERO, &[]).await;
        let mut oauth = ClientCredentials::new(format!("{}/token", up.url()), "svc", "S&1")
            .scope("a b")
            .audience("https://api")
            .param("resource", "r1");
        if basic {
            oauth = oauth.basic_auth();
        }
        let core = client(&runtime(&up, oauth));
        call(&core).await.unwrap();
        let token = &up.seen()[0];
        assert_eq!(token.method, "POST");
        assert_eq!(
            token.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let body = String::from_utf8_lossy(&token.body).into_owned();
        let params = "scope=a+b&audience=https%3A%2F%2Fapi&resource=r1";
        if basic {
            // base64("svc:S%261"): both parts form-encoded first (RFC 6749 §2.3.1).
            assert_eq!(token.header("authorization"), Some("Basic c3ZjOlMlMjYx"));
            assert_eq!(body, format!("grant_type=client_credentials&{params}"));
        } else {
            assert_eq!(token.header("authorization"), None);
            assert_eq!(
                body,
                format!("grant_type=client_credentials&client_id=svc&client_secret=S%261&{params}")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_runtimes_on_one_store_fetch_one_token_at_expiry_and_keep_it_sealed() {
    // The token lives 3 s: 512 cold calls on a loaded 2-core machine (debug build) have taken
    // close to 1 s, so a 1 s token could expire inside the cold round.
    let (up, tokens) = counting(3, Duration::from_millis(100), &[]).await;
    let store = stitch::store::MemoryStore::new(1_000);
    let cores: Vec<_> = (0..8)
        .map(|_| {
            let oauth = ClientCredentials::new(format!("{}/token", up.url()), "svc", "S")
                .skew(Duration::ZERO);
            let rt = Runtime::builder()
                .base_url(up.url())
                .store(store.clone())
                .local_throttles()
                .principal_key([7; 32])
                .seal_key(1, [8; 32])
                .auth_strategy("acme", oauth)
                .build()
                .unwrap();
            client(&rt)
        })
        .collect();
    let round = || {
        let calls: Vec<_> = cores
            .iter()
            .flat_map(|core| {
                (0..64).map(move |_| {
                    let core = core.clone();
                    tokio::spawn(async move { call(&core).await })
                })
            })
            .collect();
        async move {
            let mut seen = Vec::new();
            for c in calls {
                seen.push(c.await.unwrap().unwrap());
            }
            seen
        }
    };
    let started = Instant::now();
    let cold = round().await;
    assert!(
        cold.iter().all(|t| t == "Bearer tok-1"),
        "{} of {} calls sent another token, the round took {:?} (the token lives 3 s)",
        cold.iter().filter(|t| *t != "Bearer tok-1").count(),
        cold.len(),
        started.elapsed()
    );
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        1,
        "one token for 8 × 64 cold callers"
    );
    tokio::time::sleep(Duration::from_millis(3050)).await;
    assert!(round().await.iter().all(|t| t == "Bearer tok-2"));
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        2,
        "8 runtimes × 64 tasks at expiry: one token request"
    );
}

#[tokio::test]
async fn a_401_in_one_runtime_replaces_the_fleet_token_once_and_others_reuse_it() {
    let (up, tokens) = counting(3600, Duration::from_millis(50), &["tok-1"]).await;
    let store = stitch::store::MemoryStore::new(1_000);
    let member = || {
        let rt = Runtime::builder()
            .base_url(up.url())
            .store(store.clone())
            .local_throttles()
            .principal_key([7; 32])
            .seal_key(1, [8; 32])
            .auth_strategy(
                "acme",
                ClientCredentials::new(format!("{}/token", up.url()), "svc", "S"),
            )
            .build()
            .unwrap();
        client(&rt)
    };
    let (a, b) = (member(), member());
    // `a` fetches tok-1 (revoked): its 401 replaces it with tok-2 for the fleet.
    assert_eq!(call(&a).await.unwrap(), "Bearer tok-2");
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    // `b` starts cold and reads tok-2 from the store; its stale-free path fetches nothing.
    assert_eq!(call(&b).await.unwrap(), "Bearer tok-2");
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
}

// ---- one token per principal ----

/// A token endpoint naming what it was asked for: `tok-<n>-<client_id>-<audience>` (`none` for
/// a missing field), living `lifetime` seconds, answering after `delay`; every other path echoes
/// the `authorization` header, except that tokens listed in `revoked` get a `401`.
async fn naming(
    lifetime: u64,
    delay: Duration,
) -> (
    Upstream,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let revoked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (n, gone) = (count.clone(), revoked.clone());
    let up = Upstream::start(move |seen| {
        if seen.path == "/token" {
            let n = n.fetch_add(1, Ordering::SeqCst) + 1;
            let form: std::collections::HashMap<String, String> =
                serde_urlencoded::from_bytes(&seen.body).unwrap_or_default();
            let field = |name: &str| form.get(name).cloned().unwrap_or_else(|| "none".into());
            return Reply::json(json!({
                "access_token": format!("tok-{n}-{}-{}", field("client_id"), field("audience")),
                "token_type": "Bearer",
                "expires_in": lifetime,
            }))
            .after(delay);
        }
        let auth = seen.header("authorization").unwrap_or("none");
        if gone
            .lock()
            .unwrap()
            .iter()
            .any(|t| auth == format!("Bearer {t}"))
        {
            return Reply::status(401, "revoked");
        }
        echo_authorization(seen)
    })
    .await;
    (up, count, revoked)
}

/// Per principal: another client (`<p>-app`, secret `S-<p>`) and audience (`aud-<p>`).
fn per_principal(up: &Upstream) -> ClientCredentials {
    ClientCredentials::new(format!("{}/token", up.url()), "svc", "S-svc").per_principal(
        |p: &str| {
            Ok(TokenRequest::new()
                .client(format!("{p}-app"), Secret::new(format!("S-{p}")))
                .audience(format!("aud-{p}")))
        },
    )
}

async fn concurrently(core: &s::ClientCore, n: usize) -> Vec<String> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let core = core.clone();
            tokio::spawn(async move { call(&core).await })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap().unwrap());
    }
    out
}

fn one_value(tokens: Vec<String>) -> String {
    let first = tokens[0].clone();
    assert!(tokens.iter().all(|t| *t == first), "{tokens:?}");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_principal_gets_its_own_token_fetched_once_and_refreshed_alone() {
    let (up, tokens, revoked) = naming(3600, Duration::from_millis(50)).await;
    let core = client(&runtime(&up, per_principal(&up)));
    let alice = core.with_principal(Some("alice"));
    let bob = core.with_principal(Some("bob"));
    let (a, b) = tokio::join!(concurrently(&alice, 32), concurrently(&bob, 32));
    let (a, b) = (one_value(a), one_value(b));
    assert!(a.ends_with("-alice-app-aud-alice"), "{a}");
    assert!(b.ends_with("-bob-app-aud-bob"), "{b}");
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        2,
        "32 cold calls per principal: one token each"
    );
    // Each principal's token request carried its own client credentials.
    let bodies: Vec<String> = up
        .seen()
        .iter()
        .filter(|s| s.path == "/token")
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert!(bodies
        .iter()
        .any(|b| b.contains("client_id=alice-app&client_secret=S-alice")));
    assert!(bodies
        .iter()
        .any(|b| b.contains("client_id=bob-app&client_secret=S-bob")));
    // A client bound to no principal keeps the client's own token.
    let own = call(&core).await.unwrap();
    assert!(own.ends_with("-svc-none"), "{own}");
    assert_eq!(tokens.load(Ordering::SeqCst), 3);
    // Cached: nothing more is fetched.
    assert_eq!(call(&alice).await.unwrap(), a);
    assert_eq!(call(&bob).await.unwrap(), b);
    assert_eq!(tokens.load(Ordering::SeqCst), 3);
    // Alice's token is revoked: 16 of her calls and 16 of bob's at once replace hers alone, once.
    revoked
        .lock()
        .unwrap()
        .push(a.strip_prefix("Bearer ").unwrap().to_owned());
    let (a2, b2) = tokio::join!(concurrently(&alice, 16), concurrently(&bob, 16));
    let a2 = one_value(a2);
    assert_ne!(a2, a, "alice's rejected token was replaced");
    assert!(a2.ends_with("-alice-app-aud-alice"), "{a2}");
    assert_eq!(one_value(b2), b, "bob's token was kept");
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        4,
        "one refresh, for alice only"
    );
    // Never shown: the principals' secrets.
    let shown = format!("{:?}", per_principal(&up));
    assert!(!shown.contains("S-"), "{shown}");
}

#[tokio::test]
async fn per_principal_tokens_expire_and_refresh_ahead_per_principal() {
    // Lifetime 2 s, skew 1 s: from 1 s on each principal's next token is fetched in the
    // background, once, while its callers keep the valid one.
    let (up, tokens, _) = naming(2, Duration::from_millis(300)).await;
    let core = client(&runtime(
        &up,
        per_principal(&up).skew(Duration::from_secs(1)),
    ));
    let alice = core.with_principal(Some("alice"));
    let bob = core.with_principal(Some("bob"));
    let (a, b) = (call(&alice).await.unwrap(), call(&bob).await.unwrap());
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let (a1, b1) = tokio::join!(concurrently(&alice, 8), concurrently(&bob, 8));
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "callers did not wait for the 300 ms token requests: {:?}",
        started.elapsed()
    );
    assert_eq!((one_value(a1), one_value(b1)), (a.clone(), b.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        4,
        "one background refresh per principal"
    );
    let (a2, b2) = (call(&alice).await.unwrap(), call(&bob).await.unwrap());
    assert!(a2 != a && a2.ends_with("-alice-app-aud-alice"), "{a2}");
    assert!(b2 != b && b2.ends_with("-bob-app-aud-bob"), "{b2}");
    assert_eq!(tokens.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn per_principal_tokens_are_bounded_by_max_principals() {
    let (up, tokens, _) = naming(3600, Duration::ZERO).await;
    let core = client(&runtime(&up, per_principal(&up).max_principals(2)));
    let principals: Vec<_> = (0..10)
        .map(|i| core.with_principal(Some(format!("user-{i}").as_str())))
        .collect();
    for p in &principals {
        call(p).await.unwrap();
    }
    assert_eq!(tokens.load(Ordering::SeqCst), 10);
    for p in &principals {
        call(p).await.unwrap();
    }
    // At most 2 of the 10 tokens were kept: at least 8 are fetched again.
    let fetched = tokens.load(Ordering::SeqCst);
    assert!(
        fetched >= 18,
        "{fetched} token requests: more than 2 principals were kept"
    );
    // Without a bound low enough to matter, the second round fetches nothing.
    let (up, tokens, _) = naming(3600, Duration::ZERO).await;
    let core = client(&runtime(&up, per_principal(&up)));
    for round in 0..2 {
        for i in 0..10 {
            call(&core.with_principal(Some(format!("user-{i}").as_str())))
                .await
                .unwrap();
        }
        assert_eq!(tokens.load(Ordering::SeqCst), 10, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_runtimes_fetch_one_token_per_principal_for_the_fleet() {
    let (up, tokens, _) = naming(1, Duration::from_millis(100)).await;
    let store = stitch::store::MemoryStore::new(1_000);
    let cores: Vec<_> = (0..8)
        .map(|_| {
            let rt = Runtime::builder()
                .base_url(up.url())
                .store(store.clone())
                .local_throttles()
                .principal_key([7; 32])
                .seal_key(1, [8; 32])
                .auth_strategy("acme", per_principal(&up).skew(Duration::ZERO))
                .build()
                .unwrap();
            client(&rt)
        })
        .collect();
    let round = || {
        let calls: Vec<_> = cores
            .iter()
            .flat_map(|core| {
                ["alice", "bob"].into_iter().flat_map(move |p| {
                    (0..16).map(move |_| {
                        let core = core.with_principal(Some(p));
                        tokio::spawn(async move { (p, call(&core).await) })
                    })
                })
            })
            .collect();
        async move {
            let mut seen: Vec<(&str, String)> = Vec::new();
            for c in calls {
                let (p, token) = c.await.unwrap();
                seen.push((p, token.unwrap()));
            }
            seen
        }
    };
    let check = |seen: Vec<(&str, String)>| {
        for p in ["alice", "bob"] {
            let mine: Vec<String> = seen
                .iter()
                .filter(|(q, _)| *q == p)
                .map(|(_, t)| t.clone())
                .collect();
            let token = one_value(mine);
            assert!(
                token.ends_with(&format!("-{p}-app-aud-{p}")),
                "{p}: {token}"
            );
        }
    };
    check(round().await);
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        2,
        "8 runtimes × 2 principals × 16 cold callers: one token per principal"
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    check(round().await);
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        4,
        "at expiry: one token request per principal for the whole fleet"
    );
}

/// Current-thread runtime: the thread-local subscriber sees every task.
#[tokio::test]
async fn per_principal_secrets_and_tokens_never_show_in_errors_debug_or_traces() {
    let (capture, _guard) = stitch_tests::traces::Capture::on_this_thread();
    let (up, tokens, _) = naming(3600, Duration::ZERO).await;
    let core = client(&runtime(&up, per_principal(&up)));
    let token = call(&core.with_principal(Some("alice"))).await.unwrap();
    let token = token.strip_prefix("Bearer ").unwrap().to_owned();
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
    // A token endpoint refusing a principal's client and quoting its secret back.
    let refusing = Upstream::start(|seen| {
        Reply::status(
            401,
            &format!(
                "{{\"error\":\"invalid_client\",\"seen\":\"{}\"}}",
                String::from_utf8_lossy(&seen.body)
            ),
        )
    })
    .await;
    let oauth = ClientCredentials::new(format!("{}/token", refusing.url()), "svc", "S-svc")
        .per_principal(|p: &str| {
            Ok(TokenRequest::new().client(format!("{p}-app"), Secret::new(format!("S-{p}-9"))))
        });
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("acme", oauth)
        .build()
        .unwrap();
    let error = call(&client(&rt).with_principal(Some("bob")))
        .await
        .unwrap_err();
    let Error::Auth { body, reason, .. } = &error else {
        panic!("an auth error: {error:?}");
    };
    assert!(body.contains("invalid_client"), "{body}");
    assert!(
        reason.contains("bob-app"),
        "the principal's client is named: {reason}"
    );
    let shown = format!(
        "{}\n{error}\n{error:?}\n{:?}\n{rt:?}",
        stitch_tests::traces::everything(&error),
        per_principal(&up)
    );
    let traced = capture.text();
    assert!(
        traced.contains("oauth2::api"),
        "the capture saw the calls: {traced}"
    );
    for needle in ["S-bob-9", "S-alice", token.as_str()] {
        assert!(!shown.contains(needle), "{needle} shown: {shown}");
        assert!(!traced.contains(needle), "{needle} traced: {traced}");
    }
}
