// One static descriptor serves every call, so a stitch cannot be generic: refused at the
// generic parameters.

#[stitch::stitch(get, url = "https://api.example.com/users/{id}")]
async fn user<T: serde::de::DeserializeOwned>(id: u64) -> stitch::Result<T>;

fn main() {}
