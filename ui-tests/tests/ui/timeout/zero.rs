// A zero timeout would fail every call before it starts: `"0s"` on the seam is refused at the
// literal.

#[stitch::seam(base_url = "https://api.example.com", timeout = "0s")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
