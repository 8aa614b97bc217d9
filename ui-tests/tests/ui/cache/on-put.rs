// `cache` on a `put` stitch is refused at the `cache` key, like every write method: a cached
// response would stand in for writes that never reached the server.

#[stitch::stitch(put, url = "https://api.example.com/users/{id}", cache = "5m")]
async fn replace_user(id: u64) -> stitch::Result<String>;

fn main() {}
