// A path value is part of every URL that is shown: it cannot be secret.

#[stitch::stitch(get, url = "https://api.example.com/keys/{key}")]
async fn check(#[query(secret)] key: &str) -> stitch::Result<()>;

fn main() {}
