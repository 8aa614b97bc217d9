//! An in-process [`Store`]: bounded (moka), with per-entry expiry on tokio's clock. Shared between
//! runtimes of one process it behaves like a shared store, which is how the cache's cross-runtime
//! behaviour (fingerprints across a deploy, shared entries) is tested without a network.

use super::{Store, StoreError, StoreFuture};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// An in-process store. Clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    entries: Arc<moka::sync::Cache<String, (Bytes, Instant)>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_entries` values.
    pub fn new(max_entries: u64) -> Self {
        MemoryStore {
            entries: Arc::new(moka::sync::Cache::new(max_entries)),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        let found = match self.entries.get(key) {
            Some((v, expires)) if Instant::now() < expires => Some(v),
            Some(_) => {
                self.entries.invalidate(key);
                None
            }
            None => None,
        };
        Box::pin(async move { Ok::<_, StoreError>(found) })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        self.entries
            .insert(key.to_owned(), (value, Instant::now() + ttl));
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        let existed = self.entries.remove(key).is_some();
        Box::pin(async move { Ok(existed) })
    }
}
