// `path` is joined to the base URL and must start with `/`; a relative path is refused at the
// literal, pointing to `url` for complete URLs.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "users")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
