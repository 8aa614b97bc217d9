// Every `secret` form compiles, and the descriptor records each secret argument as a secret role:
// `#[query(secret)]`, `#[query("key", secret)]`, `#[header("name", secret)]`, and the well-known
// credential keys and headers, which are secret without the marker.

use stitch::Role;

#[stitch::seam(base_url = "https://api.example.com")]
pub trait Api {
    #[stitch(get, path = "/items")]
    async fn items(
        &self,
        #[query(secret)] token_a: &str,
        #[query("sig", secret)] signature: &str,
        #[header("x-tenant-key", secret)] tenant: &str,
        #[query] api_key: &str,
        #[header("authorization")] auth: &str,
        #[query("page")] page: u32,
        #[header("x-trace")] trace: &str,
    ) -> stitch::Result<()>;
}

fn main() {
    let roles: Vec<Role> = ApiClient::ENDPOINTS[0]
        .describe()
        .arguments
        .iter()
        .map(|a| a.role)
        .collect();
    assert_eq!(
        roles,
        [
            Role::SecretQuery("token_a"),
            Role::SecretQuery("sig"),
            Role::SecretHeader("x-tenant-key"),
            Role::SecretQuery("api_key"),
            Role::SecretHeader("authorization"),
            Role::Query("page"),
            Role::Header("x-trace"),
        ]
    );
}
