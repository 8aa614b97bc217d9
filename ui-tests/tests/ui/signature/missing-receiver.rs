// A seam method without a receiver could not reach the client's runtime: refused at the
// method's name.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users() -> stitch::Result<String>;
}

fn main() {}
