// A cached output type needs a schema fingerprint, or entries written for an old shape could be
// read after a change. Without `stitch::Fingerprint` (and no `version`) the error is on `User`.

#[derive(Clone, serde::Deserialize)]
pub struct User {
    pub id: u64,
}

#[stitch::stitch(get, url = "https://api.example.com/users/{id}", cache = "5m")]
pub async fn user(id: u64) -> stitch::Result<User>;

fn main() {}
