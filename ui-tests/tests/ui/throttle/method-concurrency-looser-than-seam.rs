// A method's concurrency cap above the seam's would be a promise the stitch cannot keep:
// refused at the method's `concurrency` value, naming the seam's cap.

#[stitch::seam(base_url = "https://api.example.com", throttle(concurrency = 2))]
trait Api {
    #[stitch(get, path = "/users", throttle(concurrency = 8))]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
