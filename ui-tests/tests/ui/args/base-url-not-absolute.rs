// `base_url` must be an absolute `http(s)://` URL (paths are joined to it); a bare host is
// refused at the literal.

#[stitch::seam(base_url = "api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
