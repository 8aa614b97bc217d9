// Every form of `cache` compiles: the short `cache = "5m"`, `cache(...)` with every key, a
// shared `scope = "app"` on an authenticated stitch acknowledged with `same_for_every_principal`,
// a hand-pinned `version` on a type without a fingerprint, and `sensitive` on an uncached stitch.

use std::time::Duration;

// `Clone`: a cached value is handed to every coalesced caller and kept in the cache.
#[derive(Debug, Clone, serde::Deserialize, stitch::Fingerprint)]
pub struct Plan {
    pub id: u64,
    pub name: String,
}

/// No `Fingerprint`: cacheable only with a pinned `version`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Legacy {
    pub raw: String,
}

#[stitch::seam(
    base_url = "https://api.example.com",
    headers("authorization" = "Bearer static-token")
)]
pub trait Plans {
    #[stitch(get, path = "/plans/{id}", cache = "5m")]
    async fn plan(&self, id: u64) -> stitch::Result<Plan>;

    #[stitch(
        get,
        path = "/plans",
        cache(
            ttl = "1h",
            scope = "app",
            vary = ["accept-language", "x-region"],
            max_entries = 500,
            coalesce = false,
            version = "2",
            same_for_every_principal
        )
    )]
    async fn plans(&self, #[header("accept-language")] lang: &str) -> stitch::Result<Vec<Plan>>;

    #[stitch(
        get,
        path = "/plans/{id}/meta",
        cache(ttl = "30s", scope = "principal")
    )]
    async fn plan_meta(&self, id: u64) -> stitch::Result<stitch::Response<Plan>>;

    #[stitch(head, path = "/plans/{id}", cache(ttl = "10s", vary = "accept"))]
    async fn plan_exists(&self, id: u64) -> stitch::Result<()>;

    #[stitch(get, path = "/legacy", cache(ttl = "1d", version = "legacy-1"))]
    async fn legacy(&self) -> stitch::Result<Legacy>;

    #[stitch(get, path = "/me/token", sensitive)]
    async fn token(&self) -> stitch::Result<String>;
}

// Shared by everyone with no credentials sent: `scope = "app"` needs no acknowledgement.
#[stitch::stitch(
    get,
    url = "https://status.example.com/summary",
    cache(ttl = "1m", scope = "app", coalesce = true)
)]
pub async fn status() -> stitch::Result<String>;

#[allow(dead_code)]
async fn use_them(api: &PlansClient) -> stitch::Result<()> {
    let _: Plan = api.plan(1).await?;
    let _: Vec<Plan> = api.plans("en").await?;
    let _: stitch::Response<Plan> = api.plan_meta(1).await?;
    api.plan_exists(1).await?;
    let _: Legacy = api.legacy().await?;
    let _: String = api.token().await?;
    let _: String = status().await?;
    Ok(())
}

fn main() {
    let e = PlansClient::ENDPOINTS;
    let plan = e[0].cache_policy().expect("plan is cached");
    assert_eq!(plan.ttl(), Duration::from_secs(300));
    assert_eq!(plan.scope(), stitch::cache::Scope::Principal);
    assert!(plan.coalesces());

    let plans = e[1].cache_policy().expect("plans is cached");
    assert_eq!(plans.ttl(), Duration::from_secs(3600));
    assert_eq!(plans.scope(), stitch::cache::Scope::App);
    assert_eq!(plans.vary(), &["accept-language", "x-region"]);
    assert_eq!(plans.max_entries(), 500);
    assert!(!plans.coalesces());
    // A pinned version replaces the type's fingerprint.
    assert_ne!(plans.fingerprint(), plan.fingerprint());

    assert_eq!(e[3].cache_policy().map(|c| c.vary()), Some(&["accept"][..]));
    assert_eq!(
        e[4].cache_policy().map(|c| c.ttl()),
        Some(Duration::from_secs(86_400))
    );
    assert!(e[5].cache_policy().is_none());
    assert!(e[5]
        .describe()
        .policies
        .iter()
        .any(|p| p.name == "sensitive"));
    assert_eq!(
        status::ENDPOINT.cache_policy().map(|c| c.scope()),
        Some(stitch::cache::Scope::App)
    );
}
