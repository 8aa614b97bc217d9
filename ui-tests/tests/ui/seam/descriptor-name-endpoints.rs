// Each stitch's descriptor is `<Client>::<METHOD>`; a method named `endpoints` would shadow the
// list of every descriptor.

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/endpoints")]
    async fn endpoints(&self) -> stitch::Result<String>;
}

fn main() {}
