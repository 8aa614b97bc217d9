// `"/s"` has a window but no count: refused at the literal, saying the count is missing.

#[stitch::stitch(get, url = "https://api.example.com/users", throttle = "/s")]
async fn users() -> stitch::Result<String>;

fn main() {}
