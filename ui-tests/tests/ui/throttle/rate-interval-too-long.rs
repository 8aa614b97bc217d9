// One request per 213504 days overflows the pacer's nanosecond clock (it paced every ~25 minutes):
// refused, with the bound.

#[stitch::stitch(get, url = "https://api.example.com/x", throttle = "1/213504d")]
async fn x() -> stitch::Result<()>;

fn main() {}
