// A bare number is ambiguous (seconds? milliseconds?): `"30"` is refused at the literal with
// both spellings suggested.

#[stitch::stitch(get, url = "https://api.example.com/users", timeout = "30")]
async fn users() -> stitch::Result<String>;

fn main() {}
