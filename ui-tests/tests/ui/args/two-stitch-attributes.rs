// Two `#[stitch]` on one method would describe two requests for one call: the second is refused.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/a")]
    #[stitch(get, path = "/b")]
    async fn a(&self) -> stitch::Result<()>;
}

fn main() {}
