// A `#[header("cookie")]` argument makes each call authenticated as its caller: sharing its
// responses with `scope = "app"` needs `same_for_every_principal`. Refused at `"app"`.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(ttl = "1h", scope = "app")
)]
async fn plans(#[header("cookie")] session: &str) -> stitch::Result<String>;

fn main() {}
