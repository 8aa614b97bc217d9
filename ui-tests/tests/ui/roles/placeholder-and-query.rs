// An argument that fills a path placeholder and is also marked `#[query]` would go in two
// places: refused at the `#[query]` attribute.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, #[query] id: u64) -> stitch::Result<String>;
}

fn main() {}
