// A count beyond what the pacer can represent is refused at the literal rather than wrapping
// or saturating silently.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle = "99999999999999999999/s"
)]
async fn users() -> stitch::Result<String>;

fn main() {}
