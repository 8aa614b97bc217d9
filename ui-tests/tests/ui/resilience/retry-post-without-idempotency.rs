// A retried `post` can apply twice (the first attempt may have succeeded and only its response
// been lost): `retry` without `idempotency` is refused at the `retry` key.

#[derive(serde::Serialize)]
pub struct Order {
    pub sku: String,
}

#[stitch::stitch(post, url = "https://api.example.com/orders", retry = 3)]
pub async fn create_order(#[body] order: &Order) -> stitch::Result<()>;

fn main() {}
