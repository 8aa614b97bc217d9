// A named lifetime gets its own message: elide it.

#[stitch::stitch(get, url = "https://api.example.com/x")]
async fn x<'a>(#[query] q: &'a str) -> stitch::Result<()>;

fn main() {}
