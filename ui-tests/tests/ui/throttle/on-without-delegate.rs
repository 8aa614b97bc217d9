// `on` lists the statuses that mean "rate limited" in `delegate` mode; next to a pacing rate it
// means nothing. Refused at the `on` key.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(rate = "2/s", on = [429])
)]
async fn users() -> stitch::Result<String>;

fn main() {}
