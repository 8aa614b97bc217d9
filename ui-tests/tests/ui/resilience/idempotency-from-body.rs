// The idempotency key is one header value: a body argument has no single text form, so every
// call would fail.

#[derive(serde::Serialize)]
struct Order {
    sku: String,
}

#[stitch::stitch(post, url = "https://api.example.com/orders", idempotency(from = "order"))]
async fn create(#[body] order: &Order) -> stitch::Result<()>;

fn main() {}
