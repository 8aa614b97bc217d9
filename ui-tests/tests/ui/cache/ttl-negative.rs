// A negative ttl means nothing: `"-1m"` is refused at the literal.

#[stitch::stitch(get, url = "https://api.example.com/plans", cache = "-1m")]
async fn plans() -> stitch::Result<String>;

fn main() {}
