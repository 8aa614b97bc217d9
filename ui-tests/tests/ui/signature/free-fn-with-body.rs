// The request is generated from the attribute, so a stitch has no body of its own: a body is
// refused at its braces.

#[stitch::stitch(get, url = "https://api.example.com/users")]
async fn users() -> stitch::Result<String> {
    Ok(String::new())
}

fn main() {}
