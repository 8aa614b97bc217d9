// Credentials never go into cache keys (the default principal scope already separates
// principals): `vary` naming `authorization` is refused at that name.

#[stitch::stitch(
    get,
    url = "https://api.example.com/plans",
    cache(ttl = "5m", vary = ["accept-language", "Authorization"])
)]
async fn plans() -> stitch::Result<String>;

fn main() {}
