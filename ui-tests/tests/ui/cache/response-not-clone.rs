// With `Response<T>` the whole response is cached, so `T` must be `Clone`: one error, on `T`.

#[derive(serde::Deserialize, stitch::Fingerprint)]
struct User {
    id: u64,
}

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}", cache = "5m")]
    async fn user(&self, id: u64) -> stitch::Result<stitch::Response<User>>;
}

fn main() {}
