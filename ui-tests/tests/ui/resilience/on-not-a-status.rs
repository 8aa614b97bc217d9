// `retry(on = [...])` lists HTTP status codes (100 to 599): `99` and `600` are each refused at
// their literal, the valid `503` is kept.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    retry(attempts = 3, on = [99, 503, 600])
)]
async fn users() -> stitch::Result<String>;

fn main() {}
