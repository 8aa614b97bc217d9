// `throttle()` declares nothing to enforce: refused at the parentheses, showing a complete
// declaration.

#[stitch::stitch(get, url = "https://api.example.com/users", throttle())]
async fn users() -> stitch::Result<String>;

fn main() {}
