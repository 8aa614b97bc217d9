// Only `secret` follows the name: a misspelt marker is refused instead of ignored.

#[stitch::stitch(get, url = "https://api.example.com/x")]
async fn x(#[header("x-api-token", secrets)] token: &str) -> stitch::Result<()>;

fn main() {}
