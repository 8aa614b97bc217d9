// `local` given twice: refused at the second.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(rate = "2/s", local, local)
)]
async fn users() -> stitch::Result<String>;

fn main() {}
