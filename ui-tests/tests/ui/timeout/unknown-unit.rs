// Durations are parsed at compile time: an unknown unit (`"5x"`) is refused at the literal,
// listing the accepted units.

#[stitch::stitch(get, url = "https://api.example.com/users", timeout = "5x")]
async fn users() -> stitch::Result<String>;

fn main() {}
