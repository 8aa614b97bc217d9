// A rate is written `<count>/<window>`; prose such as `"2 per s"` is refused at the literal
// with examples.

#[stitch::stitch(get, url = "https://api.example.com/users", throttle(rate = "2 per s"))]
async fn users() -> stitch::Result<String>;

fn main() {}
