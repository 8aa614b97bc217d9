// A stitch must say what the response decodes into: a missing return type is refused at the
// argument list, showing `-> stitch::Result<T>`.

#[stitch::stitch(delete, url = "https://api.example.com/users/{id}")]
async fn delete_user(id: u64);

fn main() {}
