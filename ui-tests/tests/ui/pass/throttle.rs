// Every form of `throttle` compiles: the short rate on a seam and a method, `throttle(...)` with
// every key and every pool kind, method throttles that tighten the seam's, and `delegate` with
// and without `on`.

use std::time::Duration;
use stitch::throttle::Pool;

#[stitch::seam(
    base_url = "https://api.example.com",
    throttle(rate = "10/s", concurrency = 8, burst = 5, max_wait = "30s")
)]
pub trait Search {
    // Tighter than the seam on both counts; the seam's throttle is acquired too.
    #[stitch(
        get,
        path = "/search",
        throttle(rate = "100/15m", concurrency = 4, burst = 2, max_wait = "10s")
    )]
    async fn search(&self, #[query] q: &str) -> stitch::Result<String>;

    #[stitch(get, path = "/suggest", throttle = "2/s")]
    async fn suggest(&self, #[query] q: &str) -> stitch::Result<String>;

    #[stitch(get, path = "/a", throttle(rate = "1/s", pool = "stitch"))]
    async fn a(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/b", throttle(concurrency = 2, pool = "host"))]
    async fn b(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/c", throttle(rate = "120/m", pool = "seam"))]
    async fn c(&self) -> stitch::Result<String>;

    #[stitch(
        get,
        path = "/d",
        throttle(rate = "5/2s", pool = "billing-v2.eu:shared")
    )]
    async fn d(&self) -> stitch::Result<String>;

    // Only the seam's throttle.
    #[stitch(get, path = "/e")]
    async fn e(&self) -> stitch::Result<String>;
}

#[stitch::seam(base_url = "https://partner.example.com", throttle = "2/s")]
pub trait Partner {
    #[stitch(get, path = "/ping", throttle(delegate))]
    async fn ping(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/report", throttle(delegate, on = [429, 503]))]
    async fn report(&self) -> stitch::Result<String>;
}

// A seam may delegate too, and share a host-wide or named pool.
#[stitch::seam(base_url = "https://delegating.example.com", throttle(delegate, on = [429, 503]))]
pub trait Delegating {
    #[stitch(get, path = "/x")]
    async fn x(&self) -> stitch::Result<()>;
}

#[stitch::seam(
    base_url = "https://hosted.example.com",
    throttle(concurrency = 4, pool = "host")
)]
pub trait Hosted {
    #[stitch(get, path = "/y", throttle(rate = "1/s", pool = "reports"))]
    async fn y(&self) -> stitch::Result<()>;
}

#[stitch::stitch(get, url = "https://api.example.com/free", throttle = "3/m")]
pub async fn free() -> stitch::Result<String>;

#[stitch::stitch(
    get,
    url = "https://api.example.com/named",
    throttle(rate = "1/100ms", pool = "shared", max_wait = "1m")
)]
pub async fn named() -> stitch::Result<String>;

#[allow(dead_code)]
async fn use_them(
    search: &SearchClient,
    partner: &PartnerClient,
    delegating: &DelegatingClient,
    hosted: &HostedClient,
) -> stitch::Result<()> {
    delegating.x().await?;
    hosted.y().await?;
    let _: String = search.search("rust").await?;
    let _: String = search.suggest("ru").await?;
    for r in [
        search.a().await,
        search.b().await,
        search.c().await,
        search.d().await,
        search.e().await,
    ] {
        let _: String = r?;
    }
    partner.ping().await?;
    let _: String = partner.report().await?;
    let _: String = free().await?;
    let _: String = named().await?;
    Ok(())
}

fn main() {
    let s = SearchClient::ENDPOINTS;
    // The seam's throttle first, then the method's.
    let search = s[0].throttle_specs();
    assert_eq!(search.len(), 2);
    assert!(matches!(search[0].pool(), Pool::Seam(name) if name.ends_with("::Search")));
    assert_eq!(search[0].max_concurrency(), Some(8));
    assert_eq!(search[1].pool(), Pool::Stitch);
    assert_eq!(search[1].max_concurrency(), Some(4));
    let rate = search[1].pacing().expect("a rate");
    assert_eq!(rate.interval(), Duration::from_secs(9));

    assert_eq!(
        s[1].throttle_specs()[1].pacing().map(|r| r.per_second()),
        Some(2.0)
    );
    assert_eq!(s[2].throttle_specs()[1].pool(), Pool::Stitch);
    assert_eq!(s[3].throttle_specs()[1].pool(), Pool::Host);
    assert!(matches!(s[4].throttle_specs()[1].pool(), Pool::Seam(_)));
    assert_eq!(
        s[5].throttle_specs()[1].pool(),
        Pool::Named("billing-v2.eu:shared")
    );
    assert_eq!(s[6].throttle_specs().len(), 1);

    // Delegate mode paces nothing itself; the seam's pacing still applies.
    let p = PartnerClient::ENDPOINTS;
    assert_eq!(p[0].throttle_specs().len(), 1);
    let delegate = |e: &stitch::Endpoint| {
        e.describe()
            .policies
            .into_iter()
            .find(|p| p.value.starts_with("delegate"))
            .map(|p| p.value)
    };
    assert_eq!(delegate(&p[0]).as_deref(), Some("delegate on [429]"));
    assert_eq!(delegate(&p[1]).as_deref(), Some("delegate on [429, 503]"));

    assert!(DelegatingClient::ENDPOINTS[0].throttle_specs().is_empty());
    assert_eq!(
        delegate(&DelegatingClient::ENDPOINTS[0]).as_deref(),
        Some("delegate on [429, 503]")
    );
    let hosted = HostedClient::ENDPOINTS[0].throttle_specs();
    assert_eq!(hosted[0].pool(), Pool::Host);
    assert_eq!(hosted[1].pool(), Pool::Named("reports"));

    assert_eq!(free::ENDPOINT.throttle_specs()[0].pool(), Pool::Stitch);
    assert_eq!(
        named::ENDPOINT.throttle_specs()[0].pool(),
        Pool::Named("shared")
    );
}
