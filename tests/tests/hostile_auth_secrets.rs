//! Hostile-use probes: secrets of auth strategies never reach errors or traces (README: "secrets never
//! appear in errors, traces or store keys").

use serde_json::json;
use stitch::auth::{Basic, Bearer, ClientCredentials, CookieSession, LoginRequest, Secret};
use stitch::Runtime;
use stitch_tests::traces::{everything, Capture};
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid", auth = "s")]
trait Api {
    #[stitch(get, path = "/data")]
    async fn data(&self) -> stitch::Result<serde_json::Value>;
}

/// Echoes everything it got (body, query, headers) in the answer with `status`.
async fn echo(status: u16, token_body: Option<serde_json::Value>) -> Upstream {
    Upstream::start(move |seen| {
        if seen.path == "/token" {
            if let Some(body) = &token_body {
                return Reply::json(body.clone());
            }
        }
        let headers: Vec<String> = seen
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let text = format!(
            "you sent {} ?{} {}",
            String::from_utf8_lossy(&seen.body),
            seen.query.clone().unwrap_or_default(),
            headers.join("; ")
        );
        Reply::status(status, &text)
    })
    .await
}

async fn check(rt: Runtime, secrets: &[&str]) -> String {
    let api = ApiClient::new(&rt).unwrap();
    let error = api.data().await.unwrap_err();
    let shown = everything(&error);
    for s in secrets {
        assert!(!shown.contains(s), "{s} shown: {shown}");
    }
    shown
}

#[tokio::test]
async fn a_token_endpoint_quoting_the_client_secret_back() {
    let (capture, _guard) = Capture::on_this_thread();
    let up = echo(400, None).await;
    let cc = ClientCredentials::new(
        format!("{}/token", up.url()),
        "svc",
        Secret::new("CLIENTSECRET9"),
    );
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("s", cc)
        .build()
        .unwrap();
    let shown = check(rt, &["CLIENTSECRET9"]).await;
    println!("{shown}");
    // A generated secret with characters a form encodes: quoted back as it was sent.
    let cc = ClientCredentials::new(
        format!("{}/token", up.url()),
        "svc",
        Secret::new("CS7+a/b=="),
    );
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("s", cc)
        .build()
        .unwrap();
    let shown = check(rt, &["CS7+a/b==", "CS7%2Ba%2Fb%3D%3D"]).await;
    println!("{shown}");
    let basic = ClientCredentials::new(
        format!("{}/token", up.url()),
        "svc",
        Secret::new("CLIENTSECRET8"),
    )
    .basic_auth();
    let rt = Runtime::builder()
        .base_url(up.url())
        .auth_strategy("s", basic)
        .build()
        .unwrap();
    // `Basic base64(svc:CLIENTSECRET8)`
    let shown = check(rt, &["CLIENTSECRET8", "c3ZjOkNMSUVOVFNFQ1JFVDg"]).await;
    println!("{shown}");
    let traced = capture.text();
    for s in ["CLIENTSECRET9", "CLIENTSECRET8", "c3ZjOkNMSUVOVFNFQ1JFVDg"] {
        assert!(!traced.contains(s), "{s} traced: {traced}");
    }
}

/// A token response the strategy cannot use: the access token it carries must not be shown.
#[tokio::test]
async fn an_unusable_token_response_never_shows_its_token() {
    for body in [
        json!({"access_token": "ACCESSTOKEN7", "token_type": "mac", "expires_in": 60}),
        json!({"access_token": "ACCESSTOKEN7", "token_type": "bearer", "expires_in": "soon"}),
        json!({"access_token": "ACCESSTOKEN7", "expires_in": -5}),
        json!({"token": "ACCESSTOKEN7"}),
    ] {
        let up = echo(500, Some(body.clone())).await;
        let cc = ClientCredentials::new(format!("{}/token", up.url()), "svc", Secret::new("s"));
        let rt = Runtime::builder()
            .base_url(up.url())
            .auth_strategy("s", cc)
            .build()
            .unwrap();
        let api = ApiClient::new(&rt).unwrap();
        match api.data().await {
            Ok(v) => println!("{body}: accepted: {v}"),
            Err(e) => {
                let shown = everything(&e);
                println!("{body}: {e}");
                assert!(!shown.contains("ACCESSTOKEN7"), "{body}: {shown}");
            }
        }
    }
}

/// A 401 / 500 echoing the bearer or basic credential.
#[tokio::test]
async fn fixed_credentials_quoted_back() {
    for status in [401, 500] {
        let up = echo(status, None).await;
        let rt = Runtime::builder()
            .base_url(up.url())
            .auth_strategy("s", Bearer::new(Secret::new("BEARERTOKEN5")))
            .build()
            .unwrap();
        check(rt, &["BEARERTOKEN5"]).await;
        let rt = Runtime::builder()
            .base_url(up.url())
            .auth_strategy("s", Basic::new("user", Secret::new("BASICPW4")))
            .build()
            .unwrap();
        // base64("user:BASICPW4")
        check(rt, &["BASICPW4", "dXNlcjpCQVNJQ1BXNA"]).await;
    }
}

/// README (cookie sessions): `.secret_field("password", ..)` is "never shown, redacted from
/// errors"; a login answered with an error quoting the form.
#[tokio::test]
async fn a_login_failure_quoting_the_password() {
    let (capture, _guard) = Capture::on_this_thread();
    for status in [401, 403, 500, 200] {
        let up = echo(status, None).await;
        let login = format!("{}/login", up.url());
        let session = CookieSession::new("app", move |_p: Option<&str>| {
            Ok(LoginRequest::post(login.clone())
                .field("user", "svc")
                .secret_field("password", Secret::new("P@SS W0RD+3&x"))
                .secret_header("x-otp", Secret::new("OTPSECRET2")))
        });
        let rt = Runtime::builder()
            .base_url(up.url())
            .auth_strategy("s", session)
            .build()
            .unwrap();
        let api = ApiClient::new(&rt).unwrap();
        let error = api.data().await.unwrap_err();
        let shown = everything(&error);
        println!("{status}: {error}");
        for s in [
            "P@SS W0RD+3&x",
            "P%40SS+W0RD%2B3%26x",
            "P%40SS%20W0RD%2B3%26x",
            "OTPSECRET2",
        ] {
            assert!(!shown.contains(s), "{status}: {s} shown: {shown}");
        }
    }
    let traced = capture.text();
    for s in ["P@SS W0RD+3&x", "P%40SS+W0RD%2B3%26x", "OTPSECRET2"] {
        assert!(!traced.contains(s), "{s} traced: {traced}");
    }
}

/// README: "`Debug` prints `Secret(REDACTED)`"; strategies hold secrets: none shows one.
#[test]
fn strategies_debug_without_secrets() {
    use stitch::auth::{ApiKey, Keyring, TokenRequest};
    let texts = [
        format!("{:?}", Bearer::new(Secret::new("DBG1SECRET"))),
        format!("{:?}", Basic::new("u", Secret::new("DBG2SECRET"))),
        format!(
            "{:?}",
            ApiKey::header("x-api-key", Secret::new("DBG3SECRET"))
        ),
        format!("{:?}", ApiKey::query("appid", Secret::new("DBG4SECRET"))),
        format!("{:?}", ApiKey::cookie("sid", Secret::new("DBG5SECRET"))),
        format!(
            "{:?}",
            ClientCredentials::new(
                "https://u:DBG6SECRET@idp.test/t?client_secret=DBG7SECRET",
                "c",
                Secret::new("DBG8SECRET")
            )
        ),
        format!(
            "{:?}",
            TokenRequest::new().client("c", Secret::new("DBG9SECRET"))
        ),
        format!(
            "{:?}",
            LoginRequest::post("https://idp.test/login?token=DBGASECRET")
                .secret_field("password", Secret::new("DBGBSECRET"))
                .secret_header("x-otp", Secret::new("DBGCSECRET"))
        ),
        format!(
            "{:?}",
            CookieSession::new("app", |_p: Option<&str>| Ok(LoginRequest::post(
                "https://x.test"
            )))
        ),
        format!("{:?}", Keyring::new(1, [42; 32])),
        format!("{:?}", Secret::new("DBGDSECRET")),
    ];
    for t in &texts {
        println!("{t}");
        assert!(!t.contains("SECRET"), "{t}");
        assert!(!t.contains("42, 42"), "{t}");
    }
}
