// Every `{name}` in the path must be filled by an argument of that name; otherwise the request
// would go to a literal `{id}`. Refused at the path literal.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, user_id: u64) -> stitch::Result<String>;
}

fn main() {}
