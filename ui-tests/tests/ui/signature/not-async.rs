// The generated body awaits an HTTP call, so a stitch must be an `async fn`: refused at
// `fn`.

#[stitch::stitch(get, url = "https://api.example.com/users")]
fn users() -> stitch::Result<String>;

fn main() {}
