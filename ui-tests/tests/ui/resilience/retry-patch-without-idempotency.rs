// `patch` is not idempotent either: `retry(...)` on it without `idempotency` is refused at the
// `retry` key, naming the method and the fix.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(patch, path = "/counters/{id}", retry(attempts = 2, on = [503]))]
    async fn bump(&self, id: u64, #[body] by: u32) -> stitch::Result<()>;
}

fn main() {}
