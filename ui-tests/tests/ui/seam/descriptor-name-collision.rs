// `user` and `USER` would both name their descriptor `AcmeClient::USER`.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/user")]
    async fn user(&self) -> stitch::Result<String>;

    #[allow(non_snake_case)]
    #[stitch(get, path = "/USER")]
    async fn USER(&self) -> stitch::Result<String>;
}

fn main() {}
