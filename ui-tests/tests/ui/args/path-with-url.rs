// `path` and `url` are two ways to say where the request goes; giving both is refused at the
// later key, naming the earlier one.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users", url = "https://api.example.com/users")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
