// Without a cooldown an open breaker never closes again: `circuit(...)` without `cooldown` is
// refused at the parentheses, showing both keys.

#[stitch::stitch(get, url = "https://api.example.com/users", circuit(failures = 5))]
async fn users() -> stitch::Result<String>;

fn main() {}
