// `circuit(..., local)` is a bare flag, and, like every key, given once.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    circuit(failures = 5, cooldown = "30s", local = false)
)]
async fn users() -> stitch::Result<String>;

#[stitch::stitch(
    get,
    url = "https://api.example.com/orders",
    circuit(failures = 5, cooldown = "30s", local, local)
)]
async fn orders() -> stitch::Result<String>;

fn main() {}
