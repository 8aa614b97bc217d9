// The error type is always `stitch::Error`: `Result<T, E>` with a custom `E` is refused at the
// return type.

#[derive(Debug)]
pub struct MyError;

#[stitch::stitch(get, url = "https://api.example.com/users")]
async fn users() -> Result<String, MyError>;

fn main() {}
