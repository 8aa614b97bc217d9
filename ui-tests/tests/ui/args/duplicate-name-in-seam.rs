// Two stitches of one seam with the same `name` would share a cache namespace and metrics: the
// second `name` is refused, naming the first method.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/stats", name = "stats", pick = "a")]
    async fn a(&self) -> stitch::Result<u64>;

    #[stitch(get, path = "/stats", name = "stats", pick = "b")]
    async fn b(&self) -> stitch::Result<u64>;
}

fn main() {}
