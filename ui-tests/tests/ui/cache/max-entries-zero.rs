// A cache bounded to no entries caches nothing: `max_entries = 0` is refused at the integer,
// suggesting to remove `cache` instead.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(ttl = "5m", max_entries = 0)
)]
async fn plans() -> stitch::Result<String>;

fn main() {}
