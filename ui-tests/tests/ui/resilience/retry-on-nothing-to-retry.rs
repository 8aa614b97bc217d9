// `retry(on = [...])` that could never retry: an empty list is refused at the brackets, a status
// that is not an error (1xx, 2xx) at its literal; the error statuses are kept.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    retry(attempts = 3, on = [])
)]
async fn users() -> stitch::Result<String>;

#[stitch::stitch(
    get,
    url = "https://api.example.com/teams",
    retry(attempts = 3, on = [200, 503, 204])
)]
async fn teams() -> stitch::Result<String>;

fn main() {}
