// Nothing becomes a query parameter silently: an argument that is not a path placeholder and
// has no `#[query]`/`#[body]`/`#[header]` is refused at its name.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: u64, verbose: bool) -> stitch::Result<String>;
}

fn main() {}
