//! TEMPORARY (one-error helper): instruction count of N cache hits, for before/after comparison.
use serde::Deserialize;
#[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
#[allow(dead_code)]
struct User {
    id: u64,
    name: String,
    email: String,
    tags: Vec<String>,
}
#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Bench {
    #[stitch(get, path = "/users/{id}", pick = "data", cache = "1h")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use axum::routing::get;
        let app = axum::Router::new().route("/users/{id}", get(|| async {
            axum::Json(serde_json::json!({"data": {"id": 7, "name": "Ada", "email": "ada@example.com", "tags": ["a", "b"]}}))
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let srt = stitch::Runtime::builder().base_url(format!("http://{addr}")).build().unwrap();
        let api = BenchClient::new(&srt).unwrap();
        api.user(7).await.unwrap();
        for _ in 0..n {
            std::hint::black_box(api.user(std::hint::black_box(7)).await.unwrap());
        }
    });
}
