use serde::Deserialize;
use stitch_tests::Upstream;

#[derive(Debug, Deserialize)]
struct Echo {
    method: String,
    path: String,
    query: Option<String>,
}

#[stitch::seam(base_url = "http://unused.invalid")]
trait Api {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: u64, #[query] verbose: bool) -> stitch::Result<Echo>;
}

#[tokio::test]
async fn smoke() {
    let up = Upstream::echo().await;
    let rt = stitch::Runtime::builder().base_url(up.url()).build().unwrap();
    let api = ApiClient::new(&rt).unwrap();
    let e = api.user(7, true).await.unwrap();
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "/users/7");
    assert_eq!(e.query.as_deref(), Some("verbose=true"));
    println!("{:#?}", ApiClient::ENDPOINTS[0].describe());
}
