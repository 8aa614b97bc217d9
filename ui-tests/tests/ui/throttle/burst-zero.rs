// `burst = 0` is the default: writing it suggests it changes something.

#[stitch::stitch(get, url = "https://api.example.com/x", throttle(rate = "2/s", burst = 0))]
async fn x() -> stitch::Result<()>;

fn main() {}
