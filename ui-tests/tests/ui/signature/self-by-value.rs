// The generated client is shared between calls, so a seam method takes `&self`; `self` by
// value is refused at the receiver.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(self) -> stitch::Result<String>;
}

fn main() {}
