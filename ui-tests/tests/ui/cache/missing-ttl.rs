// Every cache needs a lifetime: `cache(...)` without `ttl` is refused at the parentheses,
// showing `cache(ttl = "5m")`.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(scope = "principal", max_entries = 100)
)]
async fn plans() -> stitch::Result<String>;

fn main() {}
