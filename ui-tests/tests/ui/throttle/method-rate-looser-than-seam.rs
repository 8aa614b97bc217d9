// The seam's throttle applies to every method, so a method's `"5/s"` under a seam's `"2/s"`
// could never be reached: refused at the method's rate, naming the seam's.

#[stitch::seam(base_url = "https://api.example.com", throttle = "2/s")]
trait Api {
    #[stitch(get, path = "/users", throttle = "5/s")]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
