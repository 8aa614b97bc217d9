// A stitched method's body is generated; a hand-written body would be ignored, so it is
// refused at its braces.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self) -> stitch::Result<String> {
        Ok(String::new())
    }
}

fn main() {}
