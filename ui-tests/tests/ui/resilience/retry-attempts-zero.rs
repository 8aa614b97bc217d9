// The same rule in the long form: `retry(attempts = 0)` is refused at the integer.

#[stitch::stitch(get, url = "https://api.example.com/users", retry(attempts = 0))]
async fn users() -> stitch::Result<String>;

fn main() {}
