// One attempt can never outlast the whole call: `each` above `total` is a bound that never
// applies (likely the two swapped). Refused at the `each` literal.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    timeout(total = "1s", each = "5s")
)]
async fn users() -> stitch::Result<String>;

fn main() {}
