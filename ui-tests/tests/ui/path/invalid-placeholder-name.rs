// A placeholder is the name of a function argument, so it must be a Rust identifier: `{1x}`
// is refused at the path literal.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{1x}")]
    async fn user(&self, id: u64) -> stitch::Result<String>;
}

fn main() {}
