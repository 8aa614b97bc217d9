// A `from` that is a near miss of an argument (`"order"` for `order_id`) is refused at the
// literal with the argument suggested.

#[stitch::stitch(
    post,
    url = "https://api.example.com/orders/{order_id}/pay",
    retry = 3,
    idempotency(from = "order")
)]
async fn pay(order_id: u64, #[query] amount: u64) -> stitch::Result<()>;

fn main() {}
