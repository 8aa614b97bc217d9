// A raw identifier argument is known by its plain name: `{type}` in a path, `from = "type"` for
// idempotency, and the query key `type`.

#[stitch::seam(base_url = "https://api.example.com")]
pub trait Api {
    #[stitch(get, path = "/kinds/{type}")]
    async fn kind(&self, r#type: &str) -> stitch::Result<()>;

    #[stitch(post, path = "/orders", retry = 2, idempotency(from = "type"))]
    async fn order(&self, #[query] r#type: &str) -> stitch::Result<()>;
}

fn main() {
    let args = ApiClient::ENDPOINTS[1].describe().arguments;
    assert_eq!(args[0].name, "r#type");
    assert_eq!(args[0].role, stitch::Role::Query("type"));
}
