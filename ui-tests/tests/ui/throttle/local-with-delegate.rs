// Delegate mode keeps no budget, so there is nothing to keep in-process: `local` next to
// `delegate` is refused at the later of the two keys.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    throttle(delegate, local)
)]
async fn users() -> stitch::Result<String>;

fn main() {}
