// Errors are accumulated: every problem of one item is reported in one compile (here an
// unknown key, a bad timeout, an unfilled placeholder, an argument without role, a bad return).

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{id}", timeout = "5x", pik = "data")]
    async fn user(&self, user_id: u64, verbose: bool) -> String;
}

fn main() {}
