// `local` keeps a throttle or a circuit in-process even when the runtime has a store attached: on
// a seam's throttle, a method's (next to a fleet-wide seam throttle), with every other key, and
// on a circuit.

#[stitch::seam(
    base_url = "https://api.example.com",
    throttle(rate = "10/s", concurrency = 8, local)
)]
pub trait Local {
    #[stitch(get, path = "/a")]
    async fn a(&self) -> stitch::Result<String>;

    #[stitch(
        get,
        path = "/b",
        throttle(rate = "2/s", burst = 2, max_wait = "1s", pool = "reports", local),
        circuit(failures = 3, cooldown = "10s", local)
    )]
    async fn b(&self) -> stitch::Result<String>;
}

#[stitch::seam(base_url = "https://api.example.com", throttle = "20/s")]
pub trait Mixed {
    // The seam's budget is the fleet's; the method's own is per process.
    #[stitch(get, path = "/c", throttle(concurrency = 2, local))]
    async fn c(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/d", circuit(failures = 3, cooldown = "10s"))]
    async fn d(&self) -> stitch::Result<String>;
}

#[stitch::stitch(get, url = "https://api.example.com/free", throttle(rate = "1/s", local))]
pub async fn free() -> stitch::Result<String>;

#[allow(dead_code)]
async fn use_them(local: &LocalClient, mixed: &MixedClient) -> stitch::Result<()> {
    let _: String = local.a().await?;
    let _: String = local.b().await?;
    let _: String = mixed.c().await?;
    let _: String = mixed.d().await?;
    let _: String = free().await?;
    Ok(())
}

fn policy(e: &stitch::Endpoint, name: &str) -> Vec<String> {
    e.describe()
        .policies
        .into_iter()
        .filter(|p| p.name == name)
        .map(|p| p.value)
        .collect()
}

fn main() {
    let l = LocalClient::ENDPOINTS;
    assert!(l[0].throttle_specs().iter().all(|s| s.is_local()));
    assert!(l[1].throttle_specs().iter().all(|s| s.is_local()));
    assert_eq!(
        policy(l[1], "circuit"),
        ["failures=3 cooldown=10000ms local"]
    );
    let m = MixedClient::ENDPOINTS;
    let c = m[0].throttle_specs();
    assert_eq!((c[0].is_local(), c[1].is_local()), (false, true));
    assert_eq!(policy(m[1], "circuit"), ["failures=3 cooldown=10000ms"]);
    assert!(policy(m[0], "throttle")[1].ends_with(" local"));
}
