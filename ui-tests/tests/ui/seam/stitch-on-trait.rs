// `#[stitch]` describes one call; on a trait the error points at `trait` and says to use
// `#[stitch::seam]` there instead.

#[stitch::stitch(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
