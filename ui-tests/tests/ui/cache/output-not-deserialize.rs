// A cached output is decoded where its cache policy is built: a type that cannot be deserialized
// gets one error, on the output type (not a second one from the call).

#[derive(Clone, stitch::Fingerprint)]
struct User {
    id: u64,
}

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}", cache = "5m")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

fn main() {}
