// A zero ttl would cache nothing: `"0s"` is refused at the literal, showing accepted forms.

#[stitch::stitch(get, url = "https://api.example.com/plans", cache = "0s")]
async fn plans() -> stitch::Result<String>;

fn main() {}
