// `{self}` is not a value of the request: the message does not suggest an argument named `self`.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/users/{self}")]
    async fn me(&self) -> stitch::Result<()>;
}

fn main() {}
