// An argument whose type cannot be serialized is reported at that argument, not on the attribute
// (in a seam of many methods the attribute says nothing about which argument is wrong).

struct Id(u32);

#[stitch::seam(base_url = "https://api.example.com")]
trait Acme {
    #[stitch(get, path = "/users/{id}")]
    async fn user(&self, id: Id) -> stitch::Result<String>;

    #[stitch(get, path = "/users")]
    async fn search(&self, #[query] after: Id) -> stitch::Result<String>;
}

fn main() {}
