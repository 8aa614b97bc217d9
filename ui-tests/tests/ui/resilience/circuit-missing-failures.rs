// Without a failure threshold a breaker never opens: `circuit(...)` without `failures` is
// refused at the parentheses, showing both keys.

#[stitch::stitch(get, url = "https://api.example.com/users", circuit(cooldown = "30s"))]
async fn users() -> stitch::Result<String>;

fn main() {}
