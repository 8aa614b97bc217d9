// `auth = "..."` on a seam applies to every method; a method's own wins; `"none"` opts out.
// The names reach the descriptors, and an unregistered one fails `Client::new`.

#[stitch::seam(base_url = "https://api.example.com", auth = "acme")]
trait Api {
    #[stitch(get, path = "/me")]
    async fn me(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/maps", auth = "maps")]
    async fn maps(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/health", auth = "none", cache(ttl = "1m", scope = "app"))]
    async fn health(&self) -> stitch::Result<String>;
}

#[stitch::stitch(get, url = "https://api.example.com/free", auth = "acme")]
async fn free() -> stitch::Result<String>;

fn main() {
    use stitch::auth::{ApiKey, Bearer};
    assert_eq!(ApiClient::ME.auth_strategy(), Some("acme"));
    assert_eq!(ApiClient::MAPS.auth_strategy(), Some("maps"));
    assert_eq!(ApiClient::HEALTH.auth_strategy(), Some("none"));
    assert_eq!(free::ENDPOINT.auth_strategy(), Some("acme"));
    let partial = stitch::Runtime::builder()
        .auth_strategy("acme", Bearer::new("t"))
        .build()
        .unwrap();
    let error = ApiClient::new(&partial).unwrap_err();
    assert!(error.to_string().contains("`auth = \"maps\"`"), "{error}");
    let full = stitch::Runtime::builder()
        .auth_strategy("acme", Bearer::new("t"))
        .auth_strategy("maps", ApiKey::query("key", "k"))
        .build()
        .unwrap();
    ApiClient::new(&full).unwrap();
}
