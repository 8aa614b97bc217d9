// `local` is a bare flag: `local = true` would suggest `local = false` means something, and a
// string is a mistake. Refused at the value.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(rate = "2/s", local = true)
)]
async fn users() -> stitch::Result<String>;

#[stitch::stitch(
    get,
    url = "https://api.example.com/orders",
    throttle(rate = "2/s", local = "yes")
)]
async fn orders() -> stitch::Result<String>;

fn main() {}
