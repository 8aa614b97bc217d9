// A free `async fn` stitch with a complete `url` compiles into a function plus a descriptor
// (`<fn>::ENDPOINT`) naming its method and template.

#[derive(Debug, serde::Deserialize)]
pub struct Repo {
    pub full_name: String,
}

#[stitch::stitch(
    get,
    url = "https://api.example.com/repos/{owner}/{repo}",
    timeout = "5s"
)]
pub async fn repo(owner: &str, repo: &str, #[query] verbose: bool) -> stitch::Result<Repo>;

#[derive(serde::Serialize)]
pub struct Event {
    pub repo: String,
}

#[stitch::stitch(post, url = "https://api.example.com/events", headers("x-source" = "ci"))]
pub async fn publish(#[body] event: &Event) -> stitch::Result<()>;

#[allow(dead_code)]
async fn use_them() -> stitch::Result<()> {
    let r: Repo = repo("rust-lang", "rust", false).await?;
    publish(&Event { repo: r.full_name }).await
}

fn main() {
    assert_eq!(repo::ENDPOINT.method(), stitch::Method::Get);
    assert_eq!(
        repo::ENDPOINT.template(),
        "https://api.example.com/repos/{owner}/{repo}"
    );
    assert_eq!(publish::ENDPOINT.method(), stitch::Method::Post);
}
