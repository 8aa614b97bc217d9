// `pick` walks a JSON document; a `String`, `Bytes` or `()` output is not decoded as JSON, so
// `pick` would be ignored: refused at the `pick` literal.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/a", pick = "data")]
    async fn text(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/b", pick = "data")]
    async fn unit(&self) -> stitch::Result<stitch::Response<()>>;
}

fn main() {}
