// A key given twice is ambiguous (which URL wins?): the error points at the second
// occurrence, not the first.

#[stitch::stitch(
    get,
    url = "https://api.example.com/users",
    url = "https://api.example.com/people"
)]
async fn users() -> stitch::Result<String>;

fn main() {}
