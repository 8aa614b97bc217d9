// A cached value is shared by every hit and coalesced caller, across threads: an output that is
// not `Sync` (here a `Cell`) gets one error, on the output type, naming what the cache needs.

#[derive(Clone, serde::Deserialize, stitch::Fingerprint)]
#[fingerprint(version = "1")]
struct Counter {
    hits: std::cell::Cell<u64>,
}

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    #[stitch(get, path = "/counters/{id}", cache = "5m")]
    async fn counter(&self, id: u64) -> stitch::Result<Counter>;
}

fn main() {}
