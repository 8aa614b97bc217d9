// A stitch with an auth strategy is authenticated: sharing its cache across principals needs
// `same_for_every_principal`. The seam's `auth` applies to the method. Refused at `"app"`.

#[stitch::seam(base_url = "https://api.example.com", auth = "acme")]
trait Api {
    #[stitch(get, path = "/plans", cache(ttl = "1h", scope = "app"))]
    async fn plans(&self) -> stitch::Result<String>;

    // Opted out of auth: sharing is fine.
    #[stitch(get, path = "/status", auth = "none", cache(ttl = "1h", scope = "app"))]
    async fn status(&self) -> stitch::Result<String>;
}

fn main() {}
