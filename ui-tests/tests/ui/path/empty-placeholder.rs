// An empty placeholder `{}` names no argument: refused at the path literal (and the arguments
// are not also reported as unused, since the template is unknown).

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/users/{}")]
    async fn user(&self, id: u64) -> stitch::Result<String>;
}

fn main() {}
