// A `get` is already safe to repeat, so an idempotency key deduplicates nothing (and servers
// may reject the header on reads): refused at the `idempotency` key.

#[stitch::stitch(get, url = "https://api.example.com/orders/{id}", idempotency)]
async fn order(id: u64) -> stitch::Result<String>;

fn main() {}
