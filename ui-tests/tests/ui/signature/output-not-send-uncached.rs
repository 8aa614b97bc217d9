// An uncached stitch's output must be `Send` too (the method's future is `Send`): the error lands
// on the output type, never on the attribute.

#[derive(serde::Deserialize)]
struct User {
    id: u64,
    #[serde(skip)]
    memo: Option<std::rc::Rc<String>>,
}

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: u64) -> stitch::Result<User>;
}

fn main() {}
