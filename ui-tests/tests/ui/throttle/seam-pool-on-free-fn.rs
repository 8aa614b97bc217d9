// A free stitch belongs to no seam, so it has no seam budget to share: `pool = "seam"` is
// refused at the literal, listing the pools that apply.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(rate = "2/s", pool = "seam")
)]
async fn users() -> stitch::Result<String>;

fn main() {}
