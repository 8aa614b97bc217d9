// `#[seam]` knows fewer keys than `#[stitch]`: a method-only key such as `path` on the trait is
// refused at the key, and a misspelt seam key gets a suggestion.

#[stitch::seam(base_url = "https://api.example.com", path = "/v1", timout = "5s")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
