// A stitch's `name` starts its error messages and labels its traces and metrics: an empty one is
// refused at the literal.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/users", name = "")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
