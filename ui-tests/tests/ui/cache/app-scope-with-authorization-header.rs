// `scope = "app"` shares entries across principals; with a static `authorization` header the
// stitch is authenticated, so sharing needs `same_for_every_principal`. Refused at `"app"`.

#[stitch::seam(
    base_url = "https://api.example.com",
    headers("authorization" = "Bearer static-token")
)]
trait Api {
    #[stitch(get, path = "/plans", cache(ttl = "1h", scope = "app"))]
    async fn plans(&self) -> stitch::Result<String>;
}

fn main() {}
