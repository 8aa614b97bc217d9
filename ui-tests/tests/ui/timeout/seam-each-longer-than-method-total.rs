// The seam's `each` above a method's own total is a bound that never applies to that method:
// refused at the method's `timeout`.

#[stitch::seam(base_url = "https://api.example.com", timeout(total = "5s", each = "300ms"))]
trait Acme {
    #[stitch(get, path = "/x", timeout = "200ms")]
    async fn x(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/y", timeout = "1s")]
    async fn y(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/z", timeout(total = "100ms", each = "100ms"))]
    async fn z(&self) -> stitch::Result<()>;
}

fn main() {}
