// A key fixed in the template and a `#[query]` of the same key would both be sent.

#[stitch::stitch(get, url = "https://api.example.com/items?page=1")]
async fn items(#[query] page: u32) -> stitch::Result<()>;

fn main() {}
