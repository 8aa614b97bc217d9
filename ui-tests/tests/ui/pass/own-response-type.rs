// Only a path ending in `stitch::Response` is the status-and-headers wrapper: a user's own type
// named `Response<T>` is decoded as JSON like any other type.

#[derive(Debug, serde::Deserialize)]
pub struct Response<T> {
    pub data: T,
}

#[stitch::seam(base_url = "https://api.example.com")]
pub trait Api {
    #[stitch(get, path = "/count", pick = "envelope")]
    async fn count(&self) -> stitch::Result<Response<u64>>;

    #[stitch(get, path = "/meta")]
    async fn meta(&self) -> stitch::Result<stitch::Response<Response<u64>>>;
}

#[allow(dead_code)]
async fn use_them(api: &ApiClient) -> stitch::Result<u64> {
    let own: Response<u64> = api.count().await?;
    let wrapped: stitch::Response<Response<u64>> = api.meta().await?;
    Ok(own.data + wrapped.into_value().data)
}

fn main() {}
