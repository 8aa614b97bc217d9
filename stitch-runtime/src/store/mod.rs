//! The store seam: where state shared beyond one process lives. A runtime always has its
//! in-process tier; attaching a [`Store`] with `Runtime::builder().store(...)` adds a shared tier
//! that every runtime pointed at the same store reads and writes (cache entries today; throttle
//! budgets, in-flight leases and sessions use the same seam).
//!
//! Invariant: a store failure never fails a call. Reads that fail are misses, writes that fail are
//! skipped, both logged with `tracing::warn!`.

mod memory;

pub use memory::MemoryStore;

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store's failure (connection refused, timeout, protocol error, ...).
#[derive(Debug, Clone, thiserror::Error)]
#[error("store {operation} failed: {message}")]
pub struct StoreError {
    /// Which operation failed (`get`, `set`, ...).
    pub operation: &'static str,
    /// What the driver reported.
    pub message: String,
}

/// Shared key-value storage with expiry. Keys are ASCII; values are opaque bytes.
///
/// Implementations must be safe to call concurrently from many tasks and processes.
pub trait Store: Send + Sync + 'static {
    /// The value under `key`, or `None` when absent or expired.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;
    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()>;
    /// Removes `key`; returns whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool>;
}

/// A cached response as kept in a shared store: status, headers and the raw body, so any process
/// can decode it into its own output type (whose fingerprint is in the key).
pub(crate) mod record {
    use crate::http::response::RawResponse;
    use bytes::{BufMut, Bytes, BytesMut};
    use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

    const VERSION: u8 = 1;

    pub(crate) fn encode(raw: &RawResponse) -> Bytes {
        let mut out = BytesMut::with_capacity(raw.body.len() + 256);
        out.put_u8(VERSION);
        out.put_u16(raw.status.as_u16());
        put_bytes(&mut out, raw.url.as_str().as_bytes());
        out.put_u32(raw.headers.len() as u32);
        for (name, value) in &raw.headers {
            put_bytes(&mut out, name.as_str().as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_bytes(&mut out, &raw.body);
        out.freeze()
    }

    fn put_bytes(out: &mut BytesMut, b: &[u8]) {
        out.put_u32(b.len() as u32);
        out.put_slice(b);
    }

    /// `None` for anything malformed or from another format version: treated as a miss.
    pub(crate) fn decode(mut data: Bytes) -> Option<RawResponse> {
        let version = take(&mut data, 1)?[0];
        if version != VERSION {
            return None;
        }
        let status = take(&mut data, 2)?;
        let status = StatusCode::from_u16(u16::from_be_bytes([status[0], status[1]])).ok()?;
        let url = url::Url::parse(std::str::from_utf8(&take_bytes(&mut data)?).ok()?).ok()?;
        let count = u32_of(&take(&mut data, 4)?);
        let mut headers = HeaderMap::new();
        for _ in 0..count {
            let name = HeaderName::from_bytes(&take_bytes(&mut data)?).ok()?;
            let value = HeaderValue::from_maybe_shared(take_bytes(&mut data)?).ok()?;
            headers.append(name, value);
        }
        let body = take_bytes(&mut data)?;
        data.is_empty().then_some(RawResponse {
            status,
            headers,
            url,
            body,
        })
    }

    fn u32_of(b: &[u8]) -> u32 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    fn take(data: &mut Bytes, n: usize) -> Option<Bytes> {
        (data.len() >= n).then(|| data.split_to(n))
    }

    fn take_bytes(data: &mut Bytes) -> Option<Bytes> {
        let len = u32_of(&take(data, 4)?) as usize;
        take(data, len)
    }
}
