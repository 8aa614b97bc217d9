// A stitch with neither `path` nor `url` has nowhere to send its request: refused at the
// method's name, saying which key to add.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get)]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
