// A seam trait using every argument role (path, `#[query]`, `#[query("k")]`, `#[body]`,
// `#[body(form)]`, `#[header]`) and every return kind compiles, and its client lists one
// descriptor per stitched method (provided methods with a body are left alone).

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
}

#[derive(Serialize)]
pub struct NewUser {
    pub name: String,
}

#[derive(Serialize)]
pub struct Login {
    pub user: String,
    pub password: String,
}

#[stitch::seam(
    base_url = "https://api.example.com",
    headers("accept" = "application/json"),
    timeout = "10s",
    client = "Acme"
)]
pub trait AcmeApi {
    #[stitch(get, path = "/users/{id}", pick = "data", timeout = "5s")]
    async fn user(&self, id: u64) -> stitch::Result<User>;

    #[stitch(method = "GET", path = "/users?per_page=50", name = "list_users")]
    async fn users(
        &self,
        #[query] page: u32,
        #[query("q")] search: Option<String>,
        #[header("x-request-id")] request_id: &str,
    ) -> stitch::Result<stitch::Response<Vec<User>>>;

    #[stitch(post, path = "/users", headers("x-api-version" = "2"))]
    async fn create(&self, #[body] user: &NewUser) -> stitch::Result<User>;

    #[stitch(post, base_url = "https://auth.example.com", path = "/login")]
    async fn login(&self, #[body(form)] login: Login) -> stitch::Result<String>;

    #[stitch(put, path = "/users/{id}/avatar")]
    async fn avatar(&self, id: u64, #[body] image: Vec<u8>) -> stitch::Result<stitch::Bytes>;

    #[stitch(patch, path = "/orgs/{org}/users/{id}")]
    async fn rename(&self, org: String, id: u64, #[body] user: NewUser) -> stitch::Result<()>;

    #[stitch(delete, path = "/users/{id}")]
    async fn delete(&self, id: u64) -> stitch::Result<stitch::Response<()>>;

    #[stitch(head, url = "https://status.example.com/health")]
    async fn health(&self) -> stitch::Result<()>;

    /// A provided method: not stitched, kept as written.
    async fn user_name(&self, id: u64) -> stitch::Result<String> {
        Ok(self.user(id).await?.name)
    }
}

// Every method is callable through the generated client with the declared types.
#[allow(dead_code)]
async fn use_every_method(api: &Acme) -> stitch::Result<()> {
    let _: User = api.user(1).await?;
    let page: stitch::Response<Vec<User>> = api.users(2, Some("ada".into()), "req-1").await?;
    let _: &Vec<User> = page.value();
    let _: stitch::StatusCode = page.status();
    let _: User = api.create(&NewUser { name: "ada".into() }).await?;
    let login = Login {
        user: "ada".into(),
        password: "secret".into(),
    };
    let _: String = api.login(login).await?;
    let _: stitch::Bytes = api.avatar(1, vec![0xff]).await?;
    api.rename(
        "acme".into(),
        1,
        NewUser {
            name: "grace".into(),
        },
    )
    .await?;
    let _: stitch::Response<()> = api.delete(1).await?;
    api.health().await?;
    let _: String = api.user_name(1).await?;
    Ok(())
}

fn main() {
    let names: Vec<&str> = Acme::ENDPOINTS.iter().map(|e| e.name()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names[0].ends_with("::AcmeApi::user"), "{names:?}");
    assert!(names[1].ends_with("::list_users"), "{names:?}");
    assert_eq!(Acme::ENDPOINTS[3].method(), stitch::Method::Post);
    assert_eq!(Acme::ENDPOINTS[1].template(), "/users?per_page=50");
}
