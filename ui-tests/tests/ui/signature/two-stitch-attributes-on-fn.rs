// Two `#[stitch]` on one free function: the second is refused, alone.

#[stitch::stitch(get, url = "https://api.example.com/a")]
#[stitch::stitch(get, url = "https://api.example.com/b")]
async fn a() -> stitch::Result<()>;

fn main() {}
