// With `concurrency = 0` no call could ever run: refused at the integer.

#[stitch::stitch(get, url = "https://api.example.com/users", throttle(concurrency = 0))]
async fn users() -> stitch::Result<String>;

fn main() {}
