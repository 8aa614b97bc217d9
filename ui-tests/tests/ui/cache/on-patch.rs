// `cache(...)` on a `method = "PATCH"` stitch is refused at the `cache` key, whatever the
// spelling of the method.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(method = "PATCH", path = "/users/{id}", cache(ttl = "1m"))]
    async fn rename(&self, id: u64) -> stitch::Result<String>;
}

fn main() {}
