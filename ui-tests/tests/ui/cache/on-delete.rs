// A cached `delete` would report success for deletes never sent: refused at the `cache` key,
// naming the method and the fix.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(delete, path = "/users/{id}", cache = "30s")]
    async fn remove(&self, id: u64) -> stitch::Result<()>;
}

fn main() {}
