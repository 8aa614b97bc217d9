// `impl Trait` in an argument is a hidden type parameter: refused at the type.

#[stitch::stitch(get, url = "https://api.example.com/x")]
async fn x(#[query] q: impl serde::Serialize) -> stitch::Result<()>;

fn main() {}
