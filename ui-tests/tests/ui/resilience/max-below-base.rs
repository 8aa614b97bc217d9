// With `max` below `base` every backoff wait would be cut to `max`, so `base` means nothing:
// refused at the `max` literal.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    retry(attempts = 3, base = "2s", max = "500ms")
)]
async fn users() -> stitch::Result<String>;

fn main() {}
