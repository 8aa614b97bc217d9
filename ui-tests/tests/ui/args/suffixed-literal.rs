// A literal suffix means nothing in an attribute and used to be dropped silently: each suffixed
// literal gets its own error.

#[stitch::stitch(post, url = "https://api.example.com/x", retry = 3u32, idempotency, timeout = "5s"ms)]
async fn x() -> stitch::Result<()>;

fn main() {}
