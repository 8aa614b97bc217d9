// `max_wait` bounds how long a call queues for the throttle and must be a duration: `"soon"`
// is refused at the literal.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(rate = "2/s", max_wait = "soon")
)]
async fn users() -> stitch::Result<String>;

fn main() {}
