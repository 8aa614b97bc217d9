// A base URL's query or fragment would be dropped from every request (paths are joined to the
// base; queries are each stitch's own): refused at the literal.

#[stitch::seam(base_url = "https://api.example.com/v1?key=1")]
trait Acme {
    #[stitch(get, path = "/x")]
    async fn x(&self) -> stitch::Result<()>;
}

fn main() {}
