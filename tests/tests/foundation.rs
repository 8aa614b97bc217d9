//! The foundation: arguments encoded into real requests, every return kind, `pick`, and every
//! error variant, against a loopback upstream.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use stitch::{Error, Runtime};
use stitch_tests::{Reply, Upstream};

#[derive(Debug, Deserialize, PartialEq)]
struct Echo {
    method: String,
    path: String,
    query: Option<String>,
    body: String,
    headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct Filter {
    status: &'static str,
    limit: Option<u32>,
    tags: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct NewUser {
    name: String,
    city: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
struct User {
    id: u64,
    name: String,
}

#[stitch::seam(base_url = "http://declared.invalid", headers("x-seam" = "seam", "accept" = "application/json"))]
trait Api {
    #[stitch(get, path = "/users/{id}/files/{name}.json")]
    async fn file(&self, id: u64, name: &str) -> stitch::Result<Echo>;

    #[stitch(get, path = "/search?fixed=1")]
    async fn search(
        &self,
        #[query] q: &str,
        #[query("per_page")] per_page: Option<u32>,
        #[query] ids: Vec<u32>,
    ) -> stitch::Result<Echo>;

    #[stitch(get, path = "/list")]
    async fn list(&self, #[query] filter: Filter) -> stitch::Result<Echo>;

    #[stitch(post, path = "/users", headers("x-seam" = "method"))]
    async fn create(&self, #[body] user: NewUser) -> stitch::Result<Echo>;

    #[stitch(put, path = "/form")]
    async fn form(&self, #[body(form)] user: NewUser) -> stitch::Result<Echo>;

    #[stitch(patch, path = "/h")]
    async fn with_header(
        &self,
        #[header("x-trace")] trace: &str,
        #[header("x-optional")] maybe: Option<u8>,
    ) -> stitch::Result<Echo>;

    #[stitch(delete, path = "/d/{id}")]
    async fn remove(&self, id: String) -> stitch::Result<()>;

    #[stitch(head, path = "/h")]
    async fn probe(&self) -> stitch::Result<stitch::Response<()>>;

    #[stitch(get, path = "/text")]
    async fn text(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/bytes")]
    async fn bytes(&self) -> stitch::Result<stitch::Bytes>;

    #[stitch(get, path = "/wrapped")]
    async fn wrapped(&self) -> stitch::Result<stitch::Response<User>>;

    #[stitch(get, path = "/picked", pick = "data.items")]
    async fn picked(&self) -> stitch::Result<Vec<User>>;

    #[stitch(get, path = "/picked", pick = "data.items.1")]
    async fn picked_index(&self) -> stitch::Result<User>;

    #[stitch(get, path = "/user")]
    async fn user(&self) -> stitch::Result<User>;

    #[stitch(get, path = "/slow", timeout = "100ms")]
    async fn slow(&self) -> stitch::Result<()>;
}

async fn setup() -> (Upstream, ApiClient) {
    let up = Upstream::echo().await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    (up, ApiClient::new(&rt).unwrap())
}

#[tokio::test]
async fn path_values_are_percent_encoded_per_segment() {
    let (_up, api) = setup().await;
    let e = api.file(42, "a b/c?d#e%f").await.unwrap();
    assert_eq!(e.path, "/users/42/files/a%20b%2Fc%3Fd%23e%25f.json");
    let e = api.file(1, "žluť 日本").await.unwrap();
    assert_eq!(
        e.path,
        "/users/1/files/%C5%BElu%C5%A5%20%E6%97%A5%E6%9C%AC.json"
    );
}

#[tokio::test]
async fn path_values_that_would_change_the_route_are_refused_before_sending() {
    let (up, api) = setup().await;
    for bad in ["", ".", ".."] {
        let err = api.file(1, bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    argument: "name",
                    ..
                }
            ),
            "{bad:?}: {err:?}"
        );
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn query_scalars_options_and_lists() {
    let (_up, api) = setup().await;
    let e = api.search("a&b=c ü", Some(50), vec![1, 2]).await.unwrap();
    assert_eq!(
        e.query.as_deref(),
        Some("fixed=1&q=a%26b%3Dc+%C3%BC&per_page=50&ids=1&ids=2")
    );
    let e = api.search("x", None, vec![]).await.unwrap();
    assert_eq!(e.query.as_deref(), Some("fixed=1&q=x"));
}

#[tokio::test]
async fn query_struct_is_flattened() {
    let (_up, api) = setup().await;
    let e = api
        .list(Filter {
            status: "open",
            limit: None,
            tags: vec!["a", "b c"],
        })
        .await
        .unwrap();
    assert_eq!(e.query.as_deref(), Some("status=open&tags=a&tags=b+c"));
}

#[tokio::test]
async fn json_body_and_header_precedence() {
    let (_up, api) = setup().await;
    let e = api
        .create(NewUser {
            name: "Zoë \"Z\"".into(),
            city: "Zürich".into(),
        })
        .await
        .unwrap();
    assert_eq!(e.method, "POST");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&e.body).unwrap(),
        json!({"name": "Zoë \"Z\"", "city": "Zürich"})
    );
    assert_eq!(e.headers["content-type"], "application/json");
    assert_eq!(
        e.headers["x-seam"], "method",
        "a method header replaces the seam's"
    );
    assert_eq!(e.headers["accept"], "application/json");
}

#[tokio::test]
async fn form_body() {
    let (_up, api) = setup().await;
    let e = api
        .form(NewUser {
            name: "a b&c".into(),
            city: "ü".into(),
        })
        .await
        .unwrap();
    assert_eq!(e.method, "PUT");
    assert_eq!(e.body, "name=a+b%26c&city=%C3%BC");
    assert_eq!(
        e.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn header_arguments_and_invalid_header_values() {
    let (up, api) = setup().await;
    let e = api.with_header("abc-123", Some(7)).await.unwrap();
    assert_eq!(e.method, "PATCH");
    assert_eq!(e.headers["x-trace"], "abc-123");
    assert_eq!(e.headers["x-optional"], "7");
    let e = api.with_header("t", None).await.unwrap();
    assert!(!e.headers.contains_key("x-optional"));
    let before = up.hits();
    let err = api.with_header("bad\r\nvalue", None).await.unwrap_err();
    match err {
        Error::InvalidArgument {
            stitch, argument, ..
        } => {
            assert!(stitch.ends_with("Api::with_header"), "{stitch}");
            assert_eq!(argument, "x-trace");
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(up.hits(), before, "nothing is sent for an invalid argument");
}

#[tokio::test]
async fn runtime_default_headers_are_lowest_priority() {
    let up = Upstream::echo().await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .default_header("x-seam", "runtime")
        .default_header("x-runtime", "yes")
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let e = api.file(1, "a").await.unwrap();
    assert_eq!(e.headers["x-seam"], "seam");
    assert_eq!(e.headers["x-runtime"], "yes");
}

#[tokio::test]
async fn return_kinds() {
    let up = Upstream::start(|seen| match seen.path.as_str() {
        "/text" => Reply::bytes("héllo".as_bytes()),
        "/bytes" => Reply::bytes(&[0, 159, 146, 150]),
        "/wrapped" => Reply::json(json!({"id": 1, "name": "Ada"})).header("x-extra", "1"),
        "/picked" => Reply::json(json!({"data": {"other": [1, {"x": 2}], "items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}})),
        _ => Reply::status(204, ""),
    })
    .await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    assert_eq!(api.text().await.unwrap(), "héllo");
    assert_eq!(&api.bytes().await.unwrap()[..], &[0, 159, 146, 150]);
    api.remove("x".into()).await.unwrap();
    let head = api.probe().await.unwrap();
    assert_eq!(head.status(), stitch::StatusCode::NO_CONTENT);
    let wrapped = api.wrapped().await.unwrap();
    assert_eq!(wrapped.status(), stitch::StatusCode::OK);
    assert_eq!(wrapped.headers()["x-extra"], "1");
    assert_eq!(
        wrapped.value(),
        &User {
            id: 1,
            name: "Ada".into()
        }
    );
    assert_eq!(
        api.picked().await.unwrap(),
        vec![
            User {
                id: 1,
                name: "a".into()
            },
            User {
                id: 2,
                name: "b".into()
            }
        ]
    );
    assert_eq!(
        api.picked_index().await.unwrap(),
        User {
            id: 2,
            name: "b".into()
        }
    );
    assert_eq!(up.seen()[2].method, "DELETE");
    assert_eq!(up.seen()[3].method, "HEAD");
}

#[tokio::test]
async fn status_error_carries_status_url_and_bounded_body() {
    let long = "x".repeat(5000);
    let up = Upstream::start(move |_| Reply::status(503, &long)).await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .error_body_limit(100)
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    match api.user().await.unwrap_err() {
        Error::Status {
            status,
            url,
            body,
            method,
            ..
        } => {
            assert_eq!(status.as_u16(), 503);
            assert_eq!(url, format!("{}/user", up.url()));
            assert_eq!(body.len(), 100);
            assert_eq!(method, "GET");
        }
        other => panic!("expected Status, got {other:?}"),
    }
}

#[tokio::test]
async fn decode_error_names_the_json_path() {
    let up = Upstream::start(|seen| match seen.path.as_str() {
        "/picked" => Reply::json(
            json!({"data": {"items": [{"id": 1, "name": "a"}, {"id": "two", "name": "b"}]}}),
        ),
        "/user" => {
            Reply::bytes(b"{\"id\": 1, \"name\": ").header("content-type", "application/json")
        }
        _ => Reply::json(json!({"nodata": 1})),
    })
    .await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    match api.picked().await.unwrap_err() {
        Error::Decode { path, .. } => assert_eq!(path, "data.items[1].id"),
        other => panic!("expected Decode, got {other:?}"),
    }
    assert!(matches!(
        api.user().await.unwrap_err(),
        Error::Decode { .. }
    ));
    let missing = api.wrapped().await.unwrap_err();
    match &missing {
        Error::Decode { source, .. } => assert!(
            source.to_string().contains("missing field `id`"),
            "{source}"
        ),
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_pick_key_is_a_decode_error() {
    let up = Upstream::start(|_| Reply::json(json!({"data": {"elsewhere": []}}))).await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    match api.picked().await.unwrap_err() {
        Error::Decode { source, .. } => assert!(
            source.to_string().contains("missing key `items`"),
            "{source}"
        ),
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn transport_error_when_nothing_listens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let rt = Runtime::builder().base_url(&url).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let err = api.user().await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the source is chained"
    );
}

#[tokio::test]
async fn declared_timeout_bounds_the_call() {
    let up = Upstream::start(|_| Reply::status(200, "").after(Duration::from_secs(5))).await;
    let rt = Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let err = api.slow().await.unwrap_err();
    match err {
        Error::Timeout { after, bound, .. } => {
            assert_eq!(after, Duration::from_millis(100));
            assert_eq!(bound, stitch::TimeoutBound::Total);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn runtime_timeout_applies_when_the_stitch_declares_none() {
    let up =
        Upstream::start(|_| Reply::json(json!({"id":1,"name":"a"})).after(Duration::from_secs(5)))
            .await;
    let rt = Runtime::builder()
        .base_url(up.url())
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    assert!(api.user().await.unwrap_err().is_timeout());
}

#[tokio::test]
async fn missing_base_url_is_a_config_error() {
    #[stitch::seam]
    trait NoBase {
        #[stitch(get, path = "/x")]
        async fn x(&self) -> stitch::Result<()>;
    }
    let rt = Runtime::new().unwrap();
    let err = NoBaseClient::new(&rt).unwrap().x().await.unwrap_err();
    match err {
        Error::Config { reason, .. } => assert!(reason.contains("no base URL"), "{reason}"),
        other => panic!("expected Config, got {other:?}"),
    }
}

#[test]
fn runtime_builder_rejects_bad_input() {
    assert!(matches!(
        Runtime::builder().base_url("not a url").build(),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        Runtime::builder().base_url("ftp://x").build(),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        Runtime::builder().default_header("bad header", "v").build(),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        Runtime::builder().default_header("x", "a\nb").build(),
        Err(Error::Config { .. })
    ));
}

#[tokio::test]
async fn url_stitches_ignore_base_urls_and_method_base_url_overrides_seam() {
    // A `url` stitch is complete: the runtime override does not apply.
    let rt = Runtime::builder()
        .base_url("http://override.invalid")
        .build()
        .unwrap();
    #[stitch::seam(base_url = "http://seam.invalid")]
    trait Absolute {
        #[stitch(get, url = "http://127.0.0.1:1/abs/{id}")]
        async fn abs(&self, id: u32) -> stitch::Result<Echo>;
    }
    let api = AbsoluteClient::new(&rt).unwrap();
    // Port 1 is closed: the error's URL shows the `url` was used verbatim, not the override.
    match api.abs(5).await.unwrap_err() {
        Error::Transport { url, .. } => assert_eq!(url, "http://127.0.0.1:1/abs/5"),
        other => panic!("expected Transport, got {other:?}"),
    }
}

#[tokio::test]
async fn clients_are_cheap_clones_sharing_one_runtime() {
    let (up, api) = setup().await;
    let clone = api.clone();
    let (a, b) = tokio::join!(api.file(1, "a"), clone.file(2, "b"));
    a.unwrap();
    b.unwrap();
    assert_eq!(up.hits(), 2);
}

#[test]
fn every_stitch_describes_itself() {
    let ops: Vec<_> = ApiClient::ENDPOINTS.iter().map(|e| e.describe()).collect();
    assert_eq!(ops.len(), 15);
    let search = ops
        .iter()
        .find(|o| o.name.ends_with("Api::search"))
        .unwrap();
    let v = serde_json::to_value(search).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["template"], "/search?fixed=1");
    assert_eq!(v["arguments"][1]["name"], "per_page");
    assert_eq!(
        v["arguments"][1]["role"],
        json!({"role": "query", "name": "per_page"})
    );
    assert_eq!(v["arguments"][0]["schema"]["type"], "string");
    assert_eq!(v["headers"], json!(["x-seam", "accept"]));
    let user = ops.iter().find(|o| o.name.ends_with("Api::user")).unwrap();
    let schema = user.output.as_ref().expect("User implements JsonSchema");
    assert_eq!(schema["title"], "User");
    assert!(schema["properties"]["id"].is_object());
    let echo = ops.iter().find(|o| o.name.ends_with("Api::text")).unwrap();
    assert_eq!(echo.output.as_ref().unwrap()["type"], "string");
    let bytes = ops.iter().find(|o| o.name.ends_with("Api::bytes")).unwrap();
    assert!(bytes.output.is_none(), "Bytes has no JsonSchema");
    let slow = ops.iter().find(|o| o.name.ends_with("Api::slow")).unwrap();
    assert_eq!(
        serde_json::to_value(&slow.policies).unwrap(),
        json!([{"name": "timeout", "value": "100ms"}])
    );
    assert!(search.name.starts_with("foundation::"), "{}", search.name);
}

#[test]
fn call_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = Runtime::new().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let fut = api.file(1, "x");
    assert_send(&fut);
}

#[tokio::test]
async fn a_base_url_path_prefix_is_kept() {
    let up = Upstream::echo().await;
    let rt = Runtime::builder()
        .base_url(format!("{}/api/v2/", up.url()))
        .build()
        .unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let e = api.file(3, "x y").await.unwrap();
    assert_eq!(e.path, "/api/v2/users/3/files/x%20y.json");
    let e = api.search("q", None, vec![]).await.unwrap();
    assert_eq!(e.path, "/api/v2/search");
    assert_eq!(e.query.as_deref(), Some("fixed=1&q=q"));
}
