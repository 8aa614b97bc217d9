// The `delegate` conflict is reported at the later key: with `delegate` written first, the
// error is at `concurrency`, naming both.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(delegate, concurrency = 4)
)]
async fn users() -> stitch::Result<String>;

fn main() {}
