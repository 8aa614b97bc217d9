// A secret query argument (here the well-known `api_key`, secret without a marker) authenticates
// the call like a credential header: sharing its responses with `scope = "app"` needs
// `same_for_every_principal`. Refused at `"app"`.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(ttl = "1h", scope = "app")
)]
async fn plans(#[query] api_key: &str) -> stitch::Result<String>;

fn main() {}
