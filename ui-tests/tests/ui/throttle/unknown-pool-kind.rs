// A pool name one typo away from a kind (`"hots"`) is almost certainly a misspelt `"host"`, not
// a new named pool: refused at the literal with the kind suggested.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(rate = "2/s", pool = "hots")
)]
async fn users() -> stitch::Result<String>;

fn main() {}
