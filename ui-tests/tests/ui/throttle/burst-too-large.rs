// A burst worth more than the pacer can represent would saturate, i.e. not pace at all.

#[stitch::stitch(
    get,
    url = "https://api.example.com/x",
    throttle(rate = "1/d", burst = 4000000)
)]
async fn x() -> stitch::Result<()>;

fn main() {}
