// A negative duration means nothing: `"-1s"` is refused at the literal, showing accepted
// forms.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users", timeout = "-1s")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
