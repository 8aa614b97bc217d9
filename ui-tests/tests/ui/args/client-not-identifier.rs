// `client` names the generated struct: a name that is not a Rust identifier used to panic inside
// the macro; now it is an error at the literal with a suggestion.

#[stitch::seam(base_url = "https://api.example.com", client = "acme-client")]
trait Acme {
    #[stitch(get, path = "/ping")]
    async fn ping(&self) -> stitch::Result<()>;
}

fn main() {}
