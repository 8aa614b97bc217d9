// A name with a space is looked up as written and would only fail at run time. Refused at the literal.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/me", auth = "acme ")]
    async fn me(&self) -> stitch::Result<String>;
}

fn main() {}
