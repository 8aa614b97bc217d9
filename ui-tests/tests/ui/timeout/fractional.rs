// `"1.5s"` has a unit; the problem is the fraction, and the message says so with the fix.

#[stitch::stitch(get, url = "https://api.example.com/x", timeout = "1.5s")]
async fn x() -> stitch::Result<()>;

fn main() {}
