// `600` is not an HTTP status code, so the upstream could never answer with it: refused at that
// code inside `on`, the valid `429` is kept.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(delegate, on = [429, 600])
)]
async fn users() -> stitch::Result<String>;

fn main() {}
