// `#[header]` needs the header's name; the bare attribute is refused at the attribute with a
// suggested name.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self, #[header] request_id: String) -> stitch::Result<String>;
}

fn main() {}
