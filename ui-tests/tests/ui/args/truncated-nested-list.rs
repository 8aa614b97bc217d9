// A list cut short reports one error on its last token, and nothing else: no "`cache(...)` needs a
// `ttl`", no "has no `path` or `url`".

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(
        get,
        path = "/users",
        cache(ttl =)
    )]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
