// The same conflict written the other way round: the error lands on the later key, here
// `cache`.

#[stitch::stitch(get, url = "https://api.example.com/me", sensitive, cache = "5m")]
async fn me() -> stitch::Result<String>;

fn main() {}
