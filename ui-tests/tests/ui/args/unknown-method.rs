// `method = "..."` must name an HTTP method stitch can send; `FETCH` is refused at the literal
// with the list of accepted methods.

#[stitch::stitch(method = "FETCH", url = "https://api.example.com/users")]
async fn users() -> stitch::Result<String>;

fn main() {}
