// A call can fail, so a stitch returns `stitch::Result<T>`; a bare `User` is refused at the
// return type.

#[derive(serde::Deserialize)]
pub struct User {
    pub name: String,
}

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: u64) -> User;
}

fn main() {}
