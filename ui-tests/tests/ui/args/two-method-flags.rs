// A stitch sends one request with one method: `get, post` is refused at the second flag,
// naming the first.

#[stitch::stitch(get, post, url = "https://api.example.com/users")]
async fn users() -> stitch::Result<String>;

fn main() {}
