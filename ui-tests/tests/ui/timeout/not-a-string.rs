// A duration is written as a string with a unit; `timeout = 5` is refused at the integer,
// showing `timeout = "10s"`.

#[stitch::stitch(get, url = "https://api.example.com/users", timeout = 5)]
async fn users() -> stitch::Result<String>;

fn main() {}
