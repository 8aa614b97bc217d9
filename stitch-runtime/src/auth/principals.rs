//! Per-principal credential state of one strategy (a principal's session, its OAuth2 token),
//! bounded: at most `capacity` principals in a process (quick_cache's S3-FIFO, like the cache's
//! in-process tier), and an entry whose credential has expired is dropped by a sweep that runs at
//! most once per [`SWEEP_EVERY`], when a new principal arrives.
//!
//! Invariants:
//! - An entry in use (a caller holds it: a login or token request in flight, a call applying its
//!   credential) is never evicted nor swept, so one principal never has two entries — and never
//!   two logins — at once in a process. The bound can be exceeded only by entries in use.
//! - An entry is found by the generation of its current credential ([`Strategy::refresh`] names
//!   the credential, not the principal), through an index kept exact by the entries themselves:
//!   an entry leaves it when its credential is replaced or the entry is dropped, so the index
//!   never holds more than one generation per live entry.
//!
//! [`Strategy::refresh`]: super::Strategy::refresh

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How many principals a strategy keeps credentials for in a process unless told otherwise
/// (`max_principals`): beyond it the least useful entry is evicted (it logs in or fetches again
/// when next used, from the fleet's store when there is one).
pub const DEFAULT_MAX_PRINCIPALS: usize = 10_000;

/// The most often expired entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What a per-principal state says about itself.
pub(crate) trait State: Default + Send + Sync + 'static {
    /// No credential, or only an expired one: the entry may be dropped (it would log in or fetch
    /// again anyway).
    fn idle(&self) -> bool;
}

type Index<T> = Mutex<HashMap<u64, Weak<Entry<T>>>>;

/// One principal's state.
pub(crate) struct Entry<T> {
    /// `None`: calls of a client bound to no principal.
    pub(crate) principal: Option<Arc<str>>,
    pub(crate) state: T,
    /// The generation it is indexed under (0: none).
    indexed: AtomicU64,
    index: Weak<Index<T>>,
}

impl<T> Drop for Entry<T> {
    fn drop(&mut self) {
        let generation = *self.indexed.get_mut();
        if generation == 0 {
            return;
        }
        if let Some(index) = self.index.upgrade() {
            index
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&generation);
        }
    }
}

/// Pins the entries in use: quick_cache never evicts them.
struct InUse<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Clone for InUse<T> {
    fn clone(&self) -> Self {
        InUse(std::marker::PhantomData)
    }
}

impl<T: State> quick_cache::Lifecycle<Arc<str>, Arc<Entry<T>>> for InUse<T> {
    /// Evicted entries, dropped once the shard's lock is released (an entry's drop takes the
    /// index's lock).
    type RequestState = Vec<Arc<Entry<T>>>;

    fn is_pinned(&self, _: &Arc<str>, entry: &Arc<Entry<T>>) -> bool {
        Arc::strong_count(entry) > 1
    }

    fn on_evict(&self, evicted: &mut Self::RequestState, _: Arc<str>, entry: Arc<Entry<T>>) {
        evicted.push(entry);
    }
}

type Bound<T> = quick_cache::sync::Cache<
    Arc<str>,
    Arc<Entry<T>>,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    InUse<T>,
>;

/// A strategy's per-principal states, bounded; see the module doc.
pub(crate) struct Principals<T: State> {
    unbound: Arc<Entry<T>>,
    bound: Bound<T>,
    index: Arc<Index<T>>,
    capacity: usize,
    next_sweep: Mutex<Instant>,
    /// Generations are unique across principals: one names one credential.
    generations: AtomicU64,
}

impl<T: State> Principals<T> {
    /// Room for `capacity` bound principals (at least 1); the unbound one is always kept.
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let index: Arc<Index<T>> = Arc::default();
        let bound = quick_cache::sync::Cache::with_options(
            quick_cache::OptionsBuilder::new()
                .estimated_items_capacity(capacity)
                .weight_capacity(capacity as u64)
                .build()
                .unwrap_or_else(|_| unreachable!("both capacities are given")),
            quick_cache::UnitWeighter,
            quick_cache::DefaultHashBuilder::default(),
            InUse(std::marker::PhantomData),
        );
        Principals {
            unbound: Arc::new(Entry {
                principal: None,
                state: T::default(),
                indexed: AtomicU64::new(0),
                index: Arc::downgrade(&index),
            }),
            bound,
            index,
            capacity,
            next_sweep: Mutex::new(Instant::now() + SWEEP_EVERY),
            generations: AtomicU64::new(0),
        }
    }

    /// The configured bound.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many bound principals are held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bound.len()
    }

    /// The entry of `principal` (`None`: the unbound one), made when missing.
    pub(crate) fn get(&self, principal: Option<&str>) -> Arc<Entry<T>> {
        let Some(principal) = principal else {
            return self.unbound.clone();
        };
        if let Some(entry) = self.bound.get(principal) {
            return entry;
        }
        self.sweep_if_due();
        let key: Arc<str> = Arc::from(principal);
        let made = self.bound.get_or_insert_with(&key, || {
            Ok::<_, std::convert::Infallible>(Arc::new(Entry {
                principal: Some(key.clone()),
                state: T::default(),
                indexed: AtomicU64::new(0),
                index: Arc::downgrade(&self.index),
            }))
        });
        match made {
            Ok(entry) => entry,
            Err(never) => match never {},
        }
    }

    /// Drops the idle entries nobody uses, at most once per [`SWEEP_EVERY`].
    fn sweep_if_due(&self) {
        let now = Instant::now();
        {
            let mut next = self.next_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if now < *next {
                return;
            }
            *next = now + SWEEP_EVERY;
        }
        self.bound
            .retain(|_, entry| Arc::strong_count(entry) > 1 || !entry.state.idle());
    }

    /// A new generation, unique across this strategy's principals.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records that `entry`'s current credential is `generation` (its previous one leaves the
    /// index).
    pub(crate) fn index(&self, entry: &Arc<Entry<T>>, generation: u64) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let previous = entry.indexed.swap(generation, Ordering::AcqRel);
        if previous != 0 && previous != generation {
            index.remove(&previous);
        }
        index.insert(generation, Arc::downgrade(entry));
    }

    /// The entry whose current credential is `generation`, if it is still some entry's.
    pub(crate) fn by_generation(&self, generation: u64) -> Option<Arc<Entry<T>>> {
        self.index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&generation)?
            .upgrade()
    }

    /// How many generations are indexed (at most one per live entry).
    #[cfg(test)]
    pub(crate) fn indexed(&self) -> usize {
        self.index.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl State for Flag {
        fn idle(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn many_principals_stay_within_the_bound_and_so_does_the_index() {
        let principals: Principals<Flag> = Principals::new(64);
        for i in 0..20_000 {
            let entry = principals.get(Some(format!("user-{i}").as_str()));
            let generation = principals.next_generation();
            principals.index(&entry, generation);
            assert!(principals.len() <= 64, "{} held", principals.len());
        }
        assert!(
            principals.len() >= 32,
            "the bound is used: {}",
            principals.len()
        );
        assert_eq!(
            principals.indexed(),
            principals.len(),
            "one generation per live entry"
        );
        // The unbound entry is kept whatever happens to the bound ones.
        let unbound = principals.get(None);
        assert!(Arc::ptr_eq(&unbound, &principals.get(None)));
    }

    #[test]
    fn an_entry_in_use_is_never_evicted_and_a_principal_keeps_one_entry() {
        let principals: Principals<Flag> = Principals::new(8);
        let held = principals.get(Some("alice"));
        for i in 0..1_000 {
            drop(principals.get(Some(format!("user-{i}").as_str())));
        }
        assert!(
            Arc::ptr_eq(&held, &principals.get(Some("alice"))),
            "alice's entry survived 1,000 newer principals while in use"
        );
    }

    #[test]
    fn idle_entries_are_swept_and_a_replaced_generation_is_not_found() {
        let principals: Principals<Flag> = Principals::new(1_000);
        for i in 0..100 {
            let entry = principals.get(Some(format!("user-{i}").as_str()));
            entry.state.0.store(i % 2 == 0, Ordering::Relaxed);
        }
        assert_eq!(principals.len(), 100);
        *principals.next_sweep.lock().unwrap() = Instant::now();
        drop(principals.get(Some("newcomer")));
        assert_eq!(principals.len(), 51, "the 50 idle ones were swept");
        let entry = principals.get(Some("user-1"));
        principals.index(&entry, 7);
        assert!(Arc::ptr_eq(&principals.by_generation(7).unwrap(), &entry));
        principals.index(&entry, 8);
        assert!(principals.by_generation(7).is_none());
        assert!(principals.by_generation(8).is_some());
    }
}
