// A value of the wrong kind (`path = 5`) is refused at the value, showing the expected form;
// the missing path is not reported a second time.

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = 5)]
    async fn users(&self) -> stitch::Result<String>;
}

fn main() {}
