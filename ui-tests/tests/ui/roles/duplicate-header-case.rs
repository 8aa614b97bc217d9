// Header names are case-insensitive: two arguments naming one header in different cases would
// overwrite each other, so the second is refused, naming the first.

#[stitch::stitch(get, url = "https://api.example.com/x")]
async fn x(
    #[header("X-Tenant")] tenant: &str,
    #[header("x-tenant")] other: &str,
) -> stitch::Result<()>;

fn main() {}
