// The generated client implements a seam trait with safe code: an `unsafe trait` is refused at
// `unsafe`.

#[stitch::seam(base_url = "https://api.example.com")]
unsafe trait Acme {
    #[stitch(get, path = "/x")]
    async fn x(&self) -> stitch::Result<()>;
}

fn main() {}
