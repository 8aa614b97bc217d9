// A misspelt attribute key is refused at the key, with the closest known key suggested
// (`pth` → `path`), instead of being silently ignored.

#[stitch::stitch(get, pth = "/users")]
async fn users() -> stitch::Result<String>;

fn main() {}
