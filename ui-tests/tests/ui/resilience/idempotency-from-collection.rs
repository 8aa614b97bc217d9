// A collection has no single text form either.

#[stitch::stitch(post, url = "https://api.example.com/orders", idempotency(from = "ids"))]
async fn create(#[query] ids: Vec<u64>) -> stitch::Result<()>;

fn main() {}
