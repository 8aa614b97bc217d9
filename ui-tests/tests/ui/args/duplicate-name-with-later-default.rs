// A `name` equal to a later method's default name (`Trait::method`) is refused too, whatever the
// order of the methods.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/a", name = "Acme::b")]
    async fn a(&self) -> stitch::Result<u64>;

    #[stitch(get, path = "/b")]
    async fn b(&self) -> stitch::Result<u64>;
}

fn main() {}
