//! Hostile base URLs: a query in a base URL.

use stitch::{Error, Runtime};
use stitch_tests::{Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Api {
    #[stitch(get, path = "/a?y=2")]
    async fn a(&self) -> stitch::Result<String>;
}

/// README: "`base_url = "https://host/prefix"` | joined with each method's `path`". A base URL
/// with a query (`?x=1`) was accepted by `build()` (and by `base_url = ...` at compile time), and
/// its query silently dropped from every request. It must either be kept or refused (it is
/// refused: `Error::Config` here, a compile error at the literal, `ui/seam/base-url-with-query`).
#[tokio::test]
async fn a_base_urls_query_is_kept_or_refused() {
    let up = Upstream::start(|_| Reply::status(200, "ok")).await;
    let built = Runtime::builder()
        .base_url(format!("{}/p?x=1", up.url()))
        .build();
    let rt = match built {
        Err(Error::Config { .. }) => return, // refused: fine
        other => other.unwrap(),
    };
    ApiClient::new(&rt).unwrap().a().await.unwrap();
    let seen = up.seen();
    assert_eq!(seen[0].path, "/p/a");
    let query = seen[0].query.clone().unwrap_or_default();
    assert!(
        query.contains("x=1"),
        "the base URL's query was dropped: {query:?}"
    );
}
