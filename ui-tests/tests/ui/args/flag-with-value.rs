// Method flags are bare keys: `get = "yes"` is refused at the value, showing the right
// spelling (`get`).

#[stitch::stitch(get = "yes", url = "https://api.example.com/users")]
async fn users() -> stitch::Result<String>;

fn main() {}
