// `url` must be a complete `http(s)://` URL; a path in `url` is refused at the literal,
// pointing to `path`.

#[stitch::stitch(get, url = "/users/{id}")]
async fn user(id: u64) -> stitch::Result<String>;

fn main() {}
