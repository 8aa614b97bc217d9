// A method's `each` above the seam's total it inherits never applies: refused at `each`.

#[stitch::seam(base_url = "https://api.example.com", timeout = "2s")]
trait Acme {
    #[stitch(get, path = "/x", timeout(each = "5s"))]
    async fn x(&self) -> stitch::Result<()>;
}

fn main() {}
