// `auth` names a registered strategy; an empty name can never be registered. Refused at the literal.

#[stitch::seam(base_url = "https://api.example.com", auth = "")]
trait Api {
    #[stitch(get, path = "/me")]
    async fn me(&self) -> stitch::Result<String>;
}

fn main() {}
