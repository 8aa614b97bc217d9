// An output holding an `Rc` can be neither sent nor shared across threads, as the cache needs:
// one error per missing trait (rustc reports each), both on the output type, none elsewhere.

#[derive(Clone, serde::Deserialize, stitch::Fingerprint)]
#[fingerprint(version = "1")]
struct User {
    id: u64,
    #[serde(skip)]
    memo: Option<std::rc::Rc<String>>,
}

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}", cache = "5m")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

fn main() {}
