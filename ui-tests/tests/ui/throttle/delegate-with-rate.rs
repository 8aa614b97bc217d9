// `delegate` leaves pacing to the upstream (its 429 becomes a typed error); a `rate` next to it
// would be doing both. Refused at `delegate`, naming the conflict.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(rate = "2/s", delegate)
)]
async fn users() -> stitch::Result<String>;

fn main() {}
