// `sensitive` promises a response is never kept, so it conflicts with `cache`; the error lands
// on the later key, here `sensitive`.

#[stitch::stitch(get, url = "https://api.example.com/me", cache = "5m", sensitive)]
async fn me() -> stitch::Result<String>;

fn main() {}
