// Header names are case-insensitive: the same header twice in one `headers(...)` would silently
// keep only one value.

#[stitch::stitch(
    get,
    url = "https://api.example.com/x",
    headers("Accept" = "application/json", "accept" = "text/plain")
)]
async fn x() -> stitch::Result<()>;

fn main() {}
