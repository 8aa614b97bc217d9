// A cache scope is `"principal"` or `"app"`; anything else is refused at the literal, with both
// choices explained.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(ttl = "5m", scope = "global")
)]
async fn plans() -> stitch::Result<String>;

fn main() {}
