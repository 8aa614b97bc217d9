// A URL with a space in its host is accepted by a prefix check but fails every call: refused at
// compile time, at the literal.

#[stitch::stitch(get, url = "https://api example.com/x")]
async fn x() -> stitch::Result<()>;

fn main() {}
