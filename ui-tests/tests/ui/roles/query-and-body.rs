// An argument marked both `#[query]` and `#[body]` would go in two places: refused at the
// second attribute.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(post, path = "/users")]
    async fn create(
        &self,
        #[query]
        #[body]
        name: String,
    ) -> stitch::Result<()>;
}

fn main() {}
