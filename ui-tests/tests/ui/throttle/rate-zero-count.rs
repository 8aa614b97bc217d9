// A rate of `"0/s"` admits no call at all: refused at the literal (to block a stitch, do not
// call it).

#[stitch::stitch(get, url = "https://api.example.com/users", throttle = "0/s")]
async fn users() -> stitch::Result<String>;

fn main() {}
