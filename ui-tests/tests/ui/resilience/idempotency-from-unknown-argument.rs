// `from` names the argument whose value identifies the logical call; a name that is no argument
// (`"nope"`) is refused at the literal.

#[stitch::stitch(
    post,
    url = "https://api.example.com/orders/{order_id}/pay",
    idempotency(from = "nope")
)]
async fn pay(order_id: u64) -> stitch::Result<()>;

fn main() {}
