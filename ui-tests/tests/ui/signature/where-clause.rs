// A `where` clause is refused on the clause itself.

#[stitch::stitch(get, url = "https://api.example.com/x")]
async fn x() -> stitch::Result<()>
where
    u8: Copy;

fn main() {}
