// A cached stitch shares its value with every hit and coalesced caller, so the output must be
// `Clone`: one error, on the output type, with the fix (not one per generic function it meets).

#[derive(serde::Deserialize, stitch::Fingerprint)]
struct User {
    id: u64,
}

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}", cache = "5m")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

fn main() {}
