// The generated client must implement every method of a seam trait: a method with neither
// `#[stitch]` nor a default body is refused at its name.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users")]
    async fn users(&self) -> stitch::Result<String>;

    async fn admins(&self) -> stitch::Result<String>;
}

fn main() {}
