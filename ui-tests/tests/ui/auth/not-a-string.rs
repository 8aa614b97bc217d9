// `auth` takes the strategy's name as a string literal.

#[stitch::stitch(get, url = "https://api.example.com/me", auth = acme)]
async fn me() -> stitch::Result<String>;

fn main() {}
