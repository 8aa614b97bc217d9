// `#[header("...")]` names must be HTTP tokens: a name with a space is refused at the literal,
// and the argument is not also reported as having no role.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self, #[header("request id")] request_id: String) -> stitch::Result<String>;
}

fn main() {}
