//! The in-process tier: decoded values per stitch, bounded by `max_entries` (quick_cache's S3-FIFO:
//! a hit costs a hash-table probe, which keeps a cache hit far below a network call), each with
//! its own deadline on tokio's clock (so tests under paused time see exact expiry), plus the
//! stitch's invalidation generation. An expired entry is dropped when next read, or evicted by
//! newer entries: memory stays bounded by `max_entries` either way.

use crate::cache::key::CacheKey;
use crate::cache::CachePolicy;
use crate::endpoint::Endpoint;
use crate::fasthash::FastMap;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::time::Instant;

/// A decoded value, shared by every hit.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
struct Entry {
    value: Value,
    expires: Instant,
}

/// One stitch's entries and generation.
pub(crate) struct StitchCache {
    entries: quick_cache::sync::Cache<CacheKey, Entry>,
    /// The stitch's invalidation generation, part of every key: a per-process counter, or with a
    /// fleet tier the last fleet-wide value seen (`fleet.rs`).
    generation: AtomicU64,
    /// Whether `generation` holds the fleet's value (read since the last event gap).
    fleet_synced: std::sync::atomic::AtomicBool,
    /// The static part of this stitch's keys, made once (the cache belongs to one descriptor).
    static_digest: std::sync::OnceLock<[u8; 32]>,
}

impl StitchCache {
    fn new(policy: &CachePolicy) -> Self {
        StitchCache {
            entries: quick_cache::sync::Cache::new(
                usize::try_from(policy.max_entries).unwrap_or(usize::MAX),
            ),
            generation: AtomicU64::new(0),
            fleet_synced: std::sync::atomic::AtomicBool::new(false),
            static_digest: std::sync::OnceLock::new(),
        }
    }

    /// The static part of this stitch's keys (see [`crate::cache::key::static_digest`]), made
    /// once.
    pub(crate) fn static_digest(&self, make: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
        *self.static_digest.get_or_init(make)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Option<Value> {
        let entry = self.entries.get(key)?;
        if Instant::now() >= entry.expires {
            self.entries.remove(key);
            return None;
        }
        Some(entry.value)
    }

    pub(crate) fn insert(&self, key: CacheKey, value: Value, policy: &CachePolicy) {
        self.insert_for(key, value, policy.ttl);
    }

    /// Keeps `value` for `ttl` (a shared-tier hit's remaining lifetime: the in-process copy never
    /// outlives the shared entry).
    pub(crate) fn insert_for(&self, key: CacheKey, value: Value, ttl: std::time::Duration) {
        let now = Instant::now();
        let expires = now
            .checked_add(ttl)
            .unwrap_or(now + std::time::Duration::from_secs(86_400 * 365));
        self.entries.insert(key, Entry { value, expires });
    }

    /// The name of this stitch's fleet generation: its static key digest (the same in every
    /// process running the same declaration against the same upstream); `None` before the first
    /// key was derived.
    pub(crate) fn fleet_scope(&self) -> Option<String> {
        self.static_digest.get().map(fleet_scope)
    }

    pub(crate) fn fleet_synced(&self) -> bool {
        self.fleet_synced.load(Ordering::Acquire)
    }

    /// Takes the fleet's generation `n` (read from the store, or announced by a bump): a newer one
    /// makes every current entry unreachable and frees them.
    pub(crate) fn adopt_fleet_generation(&self, n: u64) {
        if self.generation.fetch_max(n, Ordering::AcqRel) < n {
            self.entries.clear();
        }
        self.fleet_synced.store(true, Ordering::Release);
    }

    /// Removes `key`'s entry; whether a live one was there (an expired entry, not yet evicted,
    /// did not exist any more: a call would have fetched).
    pub(crate) fn remove(&self, key: &CacheKey) -> bool {
        self.entries
            .remove(key)
            .is_some_and(|(_, entry)| Instant::now() < entry.expires)
    }

    /// Makes every current entry unreachable (new keys use the next generation) and frees them.
    pub(crate) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// Entries currently held.
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }
}

/// The name of a stitch's fleet generation, from its static key digest.
pub(crate) fn fleet_scope(digest: &[u8; 32]) -> String {
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Every stitch's in-process tier of one runtime, by descriptor identity ([`Endpoint::id`]): two
/// stitches sharing a `name` never share entries, invalidation or bounds.
#[derive(Default)]
pub(crate) struct LocalTier {
    stitches: RwLock<FastMap<usize, Arc<StitchCache>>>,
    generation: AtomicU64,
}

impl LocalTier {
    pub(crate) fn stitch(&self, endpoint: &Endpoint, policy: &CachePolicy) -> Arc<StitchCache> {
        let id = endpoint.id();
        if let Some(c) = self
            .stitches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return c.clone();
        }
        let mut map = self.stitches.write().unwrap_or_else(|e| e.into_inner());
        map.entry(id)
            .or_insert_with(|| Arc::new(StitchCache::new(policy)))
            .clone()
    }

    /// Runs `f` on a stitch's cache without taking a reference count (the hit path).
    pub(crate) fn peek<R>(
        &self,
        endpoint: &Endpoint,
        f: impl FnOnce(&StitchCache) -> R,
    ) -> Option<R> {
        let map = self.stitches.read().unwrap_or_else(|e| e.into_inner());
        map.get(&endpoint.id()).map(|c| f(c))
    }

    pub(crate) fn existing(&self, endpoint: &Endpoint) -> Option<Arc<StitchCache>> {
        self.stitches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&endpoint.id())
            .cloned()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Takes the fleet's runtime generation `n`: a newer one flushes every stitch.
    pub(crate) fn adopt_generation(&self, n: u64) {
        if self.generation.fetch_max(n, Ordering::AcqRel) < n {
            self.clear_all();
        }
    }

    /// Takes the fleet generation `n` of the stitch whose fleet scope is `scope`.
    pub(crate) fn adopt_stitch_generation(&self, scope: &str, n: u64) {
        for c in self.all() {
            if c.fleet_scope().as_deref() == Some(scope) {
                c.adopt_fleet_generation(n);
            }
        }
    }

    /// Removes `key` from every stitch (an exact invalidation announced by another process; keys
    /// are digests of the descriptor too, so at most one stitch holds it).
    pub(crate) fn remove_everywhere(&self, key: &CacheKey) {
        for c in self.all() {
            c.remove(key);
        }
    }

    /// Fleet events may have been lost: flush every entry and forget every fleet generation
    /// until it is read again.
    pub(crate) fn fleet_gap(&self) {
        for c in self.all() {
            c.fleet_synced.store(false, Ordering::Release);
            c.entries.clear();
        }
    }

    fn all(&self) -> Vec<Arc<StitchCache>> {
        self.stitches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn clear_all(&self) {
        for c in self.all() {
            c.entries.clear();
        }
    }

    pub(crate) fn bump_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for c in self
            .stitches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            c.entries.clear();
        }
    }
}
