// `burst` is the slack of a pacing rate; next to a concurrency cap alone it would do nothing.
// Refused at the burst value, asking for a `rate`.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(concurrency = 4, burst = 2)
)]
async fn users() -> stitch::Result<String>;

fn main() {}
