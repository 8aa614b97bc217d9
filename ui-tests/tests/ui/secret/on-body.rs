// A body never appears in URLs, errors or stored records: `secret` on it is refused with where a
// credential belongs instead.

#[derive(serde::Serialize)]
struct Login {
    password: String,
}

#[stitch::stitch(post, url = "https://api.example.com/login")]
async fn login(#[body(secret)] login: &Login) -> stitch::Result<()>;

fn main() {}
