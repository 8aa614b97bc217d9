// The ttl is parsed at compile time: an unknown unit (`"5x"`) inside `cache(...)` is refused at
// the literal, listing the accepted units.

#[stitch::stitch(get, url = "https://api.example.com/plans", cache(ttl = "5x"))]
async fn plans() -> stitch::Result<String>;

fn main() {}
