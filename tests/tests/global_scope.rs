//! The app-scope refusal also holds for free stitches on the process-wide runtime, which no
//! client constructor checks: installed with an `auth` provider, it refuses an unacknowledged
//! `scope = "app"` free stitch on its first call (a typed error, nothing sent). Its own test
//! binary: the global runtime is installed once per process.

use serde::Deserialize;
use stitch::auth::{Auth, AuthFuture};
use stitch::{Error, HeaderMap};
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
struct Motd {
    text: String,
}

#[stitch::stitch(get, path = "/motd", cache(ttl = "1m", scope = "app"))]
async fn motd() -> stitch::Result<Motd>;

#[stitch::stitch(
    get,
    path = "/motd",
    cache(ttl = "1m", scope = "app", same_for_every_principal)
)]
async fn acknowledged_motd() -> stitch::Result<Motd>;

struct Token;

impl Auth for Token {
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()> {
        Box::pin(async move {
            headers.insert("authorization", "Bearer secret".parse().unwrap());
            Ok(())
        })
    }
    fn refresh(&self) -> AuthFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn the_global_runtime_refuses_an_unacknowledged_app_scope_free_stitch() {
    let up = Upstream::start(|_| Reply::json(serde_json::json!({"text": "hi"}))).await;
    stitch::Runtime::builder()
        .base_url(up.url())
        .auth(Token)
        .build()
        .unwrap()
        .install_global()
        .unwrap();
    match motd().await {
        Err(Error::Config { stitch, reason }) => {
            assert!(stitch.ends_with("motd"), "{stitch}");
            assert!(reason.contains("same_for_every_principal"), "{reason}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(up.hits(), 0, "nothing was sent");
    assert_eq!(acknowledged_motd().await.unwrap().text, "hi");
    assert_eq!(up.hits(), 1);
}
