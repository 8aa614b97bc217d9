// `base_url = "https://"` has no host: every call would fail, so it is refused at the literal.

#[stitch::seam(base_url = "https://")]
trait Acme {
    #[stitch(get, path = "/ping")]
    async fn ping(&self) -> stitch::Result<()>;
}

fn main() {}
