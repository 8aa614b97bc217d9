// Static header names must be HTTP tokens: a name with a space (on the seam) or a colon (on the
// method) is refused at that name's literal.

#[stitch::seam(base_url = "https://api.example.com", headers("api key" = "secret"))]
trait Api {
    #[stitch(get, path = "/users", headers("accept:" = "application/json"))]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
