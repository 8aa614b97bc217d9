// A seam method's future is `Send` (so generic code can spawn it), and it holds its arguments
// across the request: an argument that is not `Send` is refused.

use std::cell::Cell;

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/users")]
    async fn search(&self, #[query] page: &Cell<u32>) -> stitch::Result<String>;
}

fn main() {}
