// The idempotency key replaces whatever is sent under its header name: on `authorization` it
// would overwrite the credential.

#[stitch::stitch(
    post,
    url = "https://api.example.com/orders",
    idempotency(header = "Authorization")
)]
async fn create() -> stitch::Result<()>;

fn main() {}
