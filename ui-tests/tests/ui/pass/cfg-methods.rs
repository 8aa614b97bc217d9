// `#[cfg]` on seam methods and free stitches: the client's impl, its descriptors and `ENDPOINTS`
// carry the same `cfg`, so a configured-out method is absent everywhere and the rest compiles.

#[stitch::seam(base_url = "https://api.example.com")]
pub trait Api {
    #[cfg(any())]
    #[stitch(get, path = "/never")]
    async fn never(&self) -> stitch::Result<NeverDefined>;

    #[cfg(all())]
    #[stitch(get, path = "/always")]
    async fn always(&self) -> stitch::Result<()>;
}

#[cfg(any())]
#[stitch::stitch(get, url = "https://api.example.com/gone")]
pub async fn gone() -> stitch::Result<NeverDefined>;

#[stitch::stitch(get, url = "https://api.example.com/here")]
#[cfg(all())]
pub async fn here() -> stitch::Result<()>;

fn main() {
    assert_eq!(ApiClient::ENDPOINTS.len(), 1);
    assert_eq!(here::ENDPOINT.template(), "https://api.example.com/here");
}
