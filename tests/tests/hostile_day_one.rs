//! Hostile-use probes of issue 12's promises, as a hostile user would try them: transport errors name
//! their cause in `Display`, secrets never reach errors, traces or `Debug`, introspection.

use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use stitch::auth::{ApiKey, Secret};
use stitch::Runtime;
use stitch_tests::traces::{everything, Capture};
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct Hit {
    n: usize,
}

#[stitch::seam(base_url = "http://declared.invalid", auth = "key")]
trait Keyed {
    #[stitch(
        get,
        path = "/fail",
        retry(attempts = 2, on = [503], backoff = "fixed", base = "10ms")
    )]
    async fn fail(&self) -> stitch::Result<Hit>;

    #[stitch(get, path = "/ok", cache = "1m")]
    async fn ok(&self) -> stitch::Result<stitch::Response<Hit>>;

    #[stitch(get, path = "/echo")]
    async fn echo(&self) -> stitch::Result<Hit>;
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Plain {
    #[stitch(get, path = "/x/{id}")]
    async fn get(&self, id: &str) -> stitch::Result<String>;
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// README: "API keys in a query are redacted"; `ApiKey::query`: "whose value is then redacted in
/// every URL stitch shows or keeps (errors, traces, `Response::url`, store records)". With a
/// parameter name that is not a well-known credential key.
#[tokio::test]
async fn api_key_query_strategy_with_a_custom_name_never_leaks() {
    let (capture, _guard) = Capture::on_this_thread();
    let up = Upstream::start(|seen| {
        if seen.path == "/fail" {
            return Reply::status(503, "busy");
        }
        if seen.path == "/echo" {
            // Quotes the query back in a body that does not decode.
            return Reply::json(json!({ "n": seen.query.clone() }));
        }
        Reply::json(json!({"n": 1}))
    })
    .await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("key", ApiKey::query("appid", Secret::new("HUNTER2APPID")))
        .build()
        .unwrap();
    let api = KeyedClient::new(&rt).unwrap();
    let error = api.fail().await.unwrap_err();
    assert_eq!(up.seen()[0].query.as_deref(), Some("appid=HUNTER2APPID"));
    let shown = everything(&error);
    assert!(!shown.contains("HUNTER2APPID"), "status error: {shown}");

    let ok = api.ok().await.unwrap();
    assert!(
        !ok.url().as_str().contains("HUNTER2APPID"),
        "Response::url: {}",
        ok.url()
    );

    let error = api.echo().await.unwrap_err();
    let shown = everything(&error);
    assert!(!shown.contains("HUNTER2APPID"), "decode error: {shown}");

    let gone = Runtime::builder()
        .base_url(format!("http://127.0.0.1:{}", closed_port()))
        .auth_strategy("key", ApiKey::query("appid", Secret::new("HUNTER2APPID")))
        .build()
        .unwrap();
    let error = KeyedClient::new(&gone).unwrap().fail().await.unwrap_err();
    let shown = everything(&error);
    assert!(!shown.contains("HUNTER2APPID"), "transport error: {shown}");
    assert!(shown.contains("refused"), "{shown}");

    let traced = capture.text();
    assert!(!traced.contains("HUNTER2APPID"), "traced: {traced}");
}

/// README: "userinfo is removed, in every error's Display and Debug ... in tracing spans".
#[tokio::test]
async fn runtime_base_url_userinfo_never_reaches_errors_or_traces() {
    let (capture, _guard) = Capture::on_this_thread();
    let up = Upstream::start(|_| Reply::status(500, "no")).await;
    let rt = Runtime::builder()
        .base_url(up.url().replace("http://", "http://admin:HUNTER3PW@"))
        .build()
        .unwrap();
    let error = PlainClient::new(&rt).unwrap().get("7").await.unwrap_err();
    let shown = everything(&error);
    assert!(!shown.contains("HUNTER3PW"), "{shown}");
    let gone = Runtime::builder()
        .base_url(format!(
            "http://admin:HUNTER3PW@127.0.0.1:{}",
            closed_port()
        ))
        .build()
        .unwrap();
    let error = PlainClient::new(&gone).unwrap().get("7").await.unwrap_err();
    let shown = everything(&error);
    assert!(!shown.contains("HUNTER3PW"), "{shown}");
    assert!(!format!("{gone:?}").contains("HUNTER3PW"));
    let traced = capture.text();
    assert!(!traced.contains("HUNTER3PW"), "traced: {traced}");
}

#[stitch::seam(base_url = "http://admin:HUNTER4PW@127.0.0.1:9")]
trait Declared {
    #[stitch(get, path = "/x")]
    async fn x(&self) -> stitch::Result<String>;
}

#[stitch::stitch(get, url = "http://admin:HUNTER5PW@127.0.0.1:9/free?token=HUNTER6TOK")]
#[allow(dead_code)] // only its descriptor is looked at
async fn free() -> stitch::Result<String>;

/// Userinfo written in the attribute itself: never in a descriptor's `Debug`, `describe()`, the
/// table, an error, a span.
#[tokio::test]
async fn declared_userinfo_never_shown() {
    let (capture, _guard) = Capture::on_this_thread();
    let texts = [
        format!("{:?}", DeclaredClient::X),
        format!("{:?}", DeclaredClient::X.describe()),
        serde_json::to_string(&DeclaredClient::X.describe()).unwrap(),
        stitch::describe_table(DeclaredClient::ENDPOINTS).to_string(),
        format!("{:?}", free::ENDPOINT),
        format!("{:?}", free::ENDPOINT.describe()),
        serde_json::to_string(&free::ENDPOINT.describe()).unwrap(),
        stitch::describe_table(&[free::ENDPOINT]).to_string(),
    ];
    for t in &texts {
        for s in ["HUNTER4PW", "HUNTER5PW", "HUNTER6TOK"] {
            assert!(!t.contains(s), "{s} in {t}");
        }
    }
    let rt = Runtime::builder().build().unwrap();
    let error = DeclaredClient::new(&rt).unwrap().x().await.unwrap_err();
    let shown = everything(&error);
    assert!(!shown.contains("HUNTER4PW"), "{shown}");
    let traced = capture.text();
    assert!(!traced.contains("HUNTER4PW"), "traced: {traced}");
}

/// Issue 12: "transport errors whose message names the cause a user can act on (refused, timed
/// out, TLS, DNS, unsupported scheme) without digging through `Debug`".
#[tokio::test]
async fn transport_causes_are_named_in_display() {
    // Refused.
    let rt = Runtime::builder()
        .base_url(format!("http://127.0.0.1:{}", closed_port()))
        .build()
        .unwrap();
    let e = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
    assert_eq!(
        e.transport_cause(),
        Some(stitch::TransportCause::ConnectionRefused)
    );
    assert!(e.to_string().contains("refused"), "{e}");

    // DNS.
    let rt = Runtime::builder()
        .base_url("http://no-such-host.invalid")
        .build()
        .unwrap();
    let e = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
    println!("dns: {e}");
    assert_eq!(
        e.transport_cause(),
        Some(stitch::TransportCause::Dns),
        "{e}"
    );
    assert!(e.to_string().contains("DNS"), "{e}");

    // TLS: https to a plain HTTP server.
    let up = Upstream::start(|_| Reply::status(200, "x")).await;
    let rt = Runtime::builder()
        .base_url(up.url().replace("http://", "https://"))
        .build()
        .unwrap();
    let e = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
    println!("tls: {e}");
    assert_eq!(
        e.transport_cause(),
        Some(stitch::TransportCause::Tls),
        "{e}"
    );
    assert!(e.to_string().contains("TLS"), "{e}");

    // Timed out: a user-supplied client with its own timeout, a server that never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = silent.accept().await.unwrap();
            held.push(s);
        }
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let rt = Runtime::builder()
        .base_url(format!("http://{addr}"))
        .http_client(client)
        .build()
        .unwrap();
    let e = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
    println!("timeout: {e}");
    assert!(e.to_string().contains("timed out"), "{e}");

    // Unsupported scheme.
    for base in ["ftp://127.0.0.1:21", "file:///tmp"] {
        match Runtime::builder().base_url(base).build() {
            Err(e) => println!("{base}: refused at build: {e}"),
            Ok(rt) => {
                let e = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
                println!("{base}: {e} / {:?}", e.transport_cause());
                assert!(e.to_string().contains("scheme"), "{e}");
            }
        }
    }
}

/// More transport causes: a server closing the connection; a user's `https_only` client.
#[tokio::test]
async fn more_transport_causes_in_display() {
    let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closing.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = closing.accept().await.unwrap();
            drop(s);
        }
    });
    let rt = Runtime::builder()
        .base_url(format!("http://{addr}"))
        .build()
        .unwrap();
    let e = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
    println!("closed: {e} / {:?}", e.transport_cause());
    assert_eq!(
        e.transport_cause(),
        Some(stitch::TransportCause::ConnectionClosed),
        "{e}"
    );
    assert!(e.to_string().contains("closed"), "{e}");

    let client = reqwest::Client::builder().https_only(true).build().unwrap();
    let rt = Runtime::builder()
        .base_url(format!("http://{addr}"))
        .http_client(client)
        .build()
        .unwrap();
    let e = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
    println!("https_only: {e} / {:?}", e.transport_cause());
    assert_eq!(
        e.transport_cause(),
        Some(stitch::TransportCause::UnsupportedScheme),
        "{e}"
    );
    assert!(e.to_string().contains("scheme"), "{e}");

    // A garbage CA bundle is a configuration error, not a panic.
    match Runtime::builder()
        .root_certificates_pem(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
        .build()
    {
        Err(stitch::Error::Config { .. }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[stitch::seam(base_url = "http://declared.invalid")]
#[allow(dead_code)] // only its descriptor is looked at
trait Described {
    #[stitch(
        get,
        path = "/d",
        cache(ttl = "1m", scope = "app", same_for_every_principal),
        throttle(
            rate = "2/s",
            concurrency = 4,
            pool = "host",
            burst = 2,
            max_wait = "10s"
        ),
        retry(attempts = 3, respect_retry_after = false)
    )]
    async fn d(&self) -> stitch::Result<String>;
}

/// README: "`endpoint.describe()` returns a stitch's name, method, template, policies": every
/// declared policy key that changes behaviour is there (`version` is folded into the key's
/// fingerprint and not kept apart).
#[test]
fn describe_shows_every_declared_policy_key() {
    let op = DescribedClient::D.describe();
    let policies: Vec<String> = op
        .policies
        .iter()
        .map(|p| format!("{}({})", p.name, p.value))
        .collect();
    println!("{policies:?}");
    println!("{}", stitch::describe_table(DescribedClient::ENDPOINTS));
    let all = policies.join(" ");
    for key in [
        "burst=2",
        "max_wait=10000ms",
        "same_for_every_principal",
        "respect_retry_after=false",
    ] {
        assert!(all.contains(key), "`{key}` not described: {all}");
    }
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Hostile {
    #[stitch(get, path = "/files/{name}/raw")]
    async fn file(&self, name: &str) -> stitch::Result<String>;

    #[stitch(get, path = "/q")]
    async fn q(
        &self,
        #[query] map: &std::collections::BTreeMap<String, String>,
        #[header("x-note")] note: &str,
    ) -> stitch::Result<String>;
}

/// README (arguments): a path value is "always one percent-encoded segment ... `""`, `.` and
/// `..` are refused with `Error::InvalidArgument`"; a `#[header]` value with a line break "fails
/// the call with `Error::InvalidArgument` before anything is sent".
#[tokio::test]
async fn hostile_arguments() {
    let up = Upstream::start(|seen| {
        Reply::status(
            200,
            &format!("{}?{}", seen.path, seen.query.clone().unwrap_or_default()),
        )
    })
    .await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = HostileClient::new(&rt).unwrap();
    for bad in ["", ".", ".."] {
        match api.file(bad).await {
            Err(stitch::Error::InvalidArgument { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    for (value, path) in [
        ("a/b", "/files/a%2Fb/raw"),
        ("../etc", "/files/..%2Fetc/raw"),
        ("%2e%2e", "/files/%252e%252e/raw"),
        ("a?b#c", "/files/a%3Fb%23c/raw"),
        ("ü", "/files/%C3%BC/raw"),
    ] {
        let got = api.file(value).await.unwrap();
        assert_eq!(got, format!("{path}?"), "{value:?}");
    }
    assert_eq!(up.hits(), 5, "nothing sent for the refused ones");
    let mut map = std::collections::BTreeMap::new();
    map.insert("a&b=c".to_owned(), "d&e=f#g".to_owned());
    let got = api.q(&map, "ok").await.unwrap();
    assert_eq!(got, "/q?a%26b%3Dc=d%26e%3Df%23g");
    match api.q(&map, "x\r\nset-cookie: y").await {
        Err(stitch::Error::InvalidArgument { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(up.hits(), 6);
}

/// README: "every secret the request sent is replaced in `Error::Status`'s body prefix and
/// headers": base-URL userinfo is sent as `authorization: Basic ..`; an upstream quoting that
/// header back.
#[tokio::test]
async fn userinfo_sent_as_basic_and_quoted_back() {
    let up = Upstream::start(|seen| {
        let auth = seen.header("authorization").unwrap_or("none").to_owned();
        // Some servers log the decoded credentials too.
        Reply::status(500, &format!("you sent {auth} (admin:HUNTER8PW)")).header("x-echo", &auth)
    })
    .await;
    let rt = Runtime::builder()
        .base_url(up.url().replace("http://", "http://admin:HUNTER8PW@"))
        .build()
        .unwrap();
    let error = PlainClient::new(&rt).unwrap().get("1").await.unwrap_err();
    let shown = everything(&error);
    // base64("admin:HUNTER8PW")
    let basic = "YWRtaW46SFVOVEVSOFBX";
    assert!(up.seen()[0]
        .header("authorization")
        .unwrap()
        .contains(basic));
    assert!(!shown.contains(basic), "{shown}");
    assert!(!shown.contains("HUNTER8PW"), "{shown}");
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Brief {
    #[stitch(get, path = "/b/{id}", cache = "1s")]
    async fn b(&self, id: u64) -> stitch::Result<String>;
}

/// README: `stitch::invalidate` "returns whether an entry existed": an expired entry does not
/// exist any more (the next call would fetch).
#[tokio::test]
async fn invalidate_of_an_expired_entry_reports_false() {
    let up = Upstream::start(|_| Reply::status(200, "x")).await;
    for store in [false, true] {
        let mut b = Runtime::builder().base_url(up.url());
        if store {
            b = b.store(stitch::store::MemoryStore::new(100));
        }
        let rt = b.build().unwrap();
        let api = BriefClient::new(&rt).unwrap();
        api.b(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(
            !stitch::invalidate(api.b(1)).await,
            "an expired entry reported as existing (store: {store})"
        );
        api.b(2).await.unwrap();
        assert!(stitch::invalidate(api.b(2)).await, "store: {store}");
    }
}
