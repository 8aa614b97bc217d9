// A request has one body: a second `#[body]` argument is refused at its attribute, suggesting
// one struct for both values.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(post, path = "/users")]
    async fn create(&self, #[body] name: String, #[body] email: String) -> stitch::Result<()>;
}

fn main() {}
