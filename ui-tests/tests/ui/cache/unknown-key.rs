// A misspelt key inside `cache(...)` is refused at the key with the closest known key
// suggested (`max_entrys` → `max_entries`), instead of being ignored.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(ttl = "5m", max_entrys = 100)
)]
async fn plans() -> stitch::Result<String>;

fn main() {}
