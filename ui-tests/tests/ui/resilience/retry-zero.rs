// `retry = N` counts the first try too, so `0` would never send the request: refused at the
// integer (`1` means no retry).

#[stitch::stitch(get, url = "https://api.example.com/users", retry = 0)]
async fn users() -> stitch::Result<String>;

fn main() {}
