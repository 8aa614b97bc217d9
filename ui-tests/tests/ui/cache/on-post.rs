// A write's response describes that one write: replaying it from a cache would hide the outcome
// of the next write. `cache` on a `post` stitch is refused at the `cache` key.

#[stitch::stitch(post, url = "https://api.example.com/orders", cache = "5m")]
async fn create_order() -> stitch::Result<String>;

fn main() {}
