// A syntax error before the target is the only error: the target may be what did not parse.

#[stitch::stitch(get, = "x", url = "https://api.example.com/users")]
async fn users() -> stitch::Result<String>;

fn main() {}
