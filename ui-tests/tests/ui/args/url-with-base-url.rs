// `url` is a complete URL and never joined to a base URL, so a `base_url` next to it would be
// silently ignored: refused at `base_url`.

#[stitch::stitch(
    get,
    base_url = "https://api.example.com",
    url = "https://other.example.com/users"
)]
async fn users() -> stitch::Result<String>;

fn main() {}
