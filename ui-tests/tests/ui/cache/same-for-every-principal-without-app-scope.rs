// `same_for_every_principal` acknowledges sharing across principals; without `scope = "app"`
// nothing is shared, so it is refused at the flag.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(ttl = "1h", same_for_every_principal)
)]
async fn plans() -> stitch::Result<String>;

fn main() {}
