// `#[stitch]` on a trait method only works inside a `#[stitch::seam]` trait (the seam generates
// the client that implements it); without it the error says to add `#[stitch::seam]`.

trait Api {
    #[stitch::stitch(get, path = "/users")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
