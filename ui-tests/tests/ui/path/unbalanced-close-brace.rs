// A `}` without its `{` is refused at the path literal, saying where it is; no follow-up
// errors about the arguments.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/id}")]
    async fn user(&self, id: u64) -> stitch::Result<String>;
}

fn main() {}
