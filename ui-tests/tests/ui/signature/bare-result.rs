// A bare `stitch::Result` names no output type: the error asks for one (it does not suggest
// `stitch::Result<stitch::Result>`).

#[stitch::stitch(get, url = "https://api.example.com/users")]
async fn users() -> stitch::Result;

fn main() {}
