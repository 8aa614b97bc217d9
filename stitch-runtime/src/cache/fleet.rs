//! The fleet tier: with a shared store that has the `fill`, `bump`, `publish` and `subscribe`
//! verbs, a cached stitch behaves as if the fleet were one process.
//!
//! - **One in-flight request per key for the fleet.** Only a key's in-process leader (see
//!   `coalesce.rs`) talks to the store: it claims the entry ([`Store::fill_claim`], one round trip,
//!   which also returns the value on a hit). The claimant that gets the fill lease fetches, renews
//!   the lease every third of its TTL while the fetch runs (a slow fetch never lets a second
//!   leader in) and completes fenced ([`Store::fill_complete`]: a leader that lost its lease, or
//!   whose entry was invalidated meanwhile, stores nothing). The others wait for the completion
//!   notification, published atomically with the write, and re-check at most every
//!   [`RECHECK`] (a lost message only delays) and when the lease would end (a dead leader is
//!   replaced within the lease TTL). A failed upstream exchange is completed as a short negative
//!   entry ([`record::Failure`]), so the waiters get the outcome without repeating the request.
//!   A leader dropped before its outcome gives the lease back at once ([`Store::fill_abandon`]).
//! - **The value rides on the notification.** A completion of at most [`CARRIED_MAX`] bytes
//!   asks the store to publish the stored value itself (`V|<key>|<ttl µs>|<value>`), which it
//!   does only when the fenced write happened (so it is exactly what the store holds) and a
//!   claim found the fill busy (someone waits: a fill nobody waited for does not send its value
//!   to every process). A woken waiter takes the value from the message instead of claiming
//!   again: one round trip per waiting instance, not two, and no burst of claims against the
//!   store at the moment of the wake-up. Larger values, and fills the store refused, publish
//!   `C|<key>` and the waiters claim again. The in-process tier keeps a carried value for its
//!   TTL counted from when the waiter's last claim was sent (the write came after that claim
//!   found the fill busy), so it never outlives the shared entry; an invalidation announced
//!   after it still wins (the flight is marked stale and the entry removed).
//! - **Generations live in the store.** The runtime's and each stitch's invalidation generations
//!   are fleet-wide counters ([`Store::bump`]) that enter every key; each process keeps the last
//!   value it saw, read once after subscribing and updated by the bump's own notification, which
//!   also flushes that scope of the in-process tier. An exact invalidation deletes the entry, its
//!   fill lease and bumps the entry's own generation in one step, and its notification removes the
//!   entry from every process's in-process tier.
//! - **Coherence under faults.** When the event channel reports a gap (a lagging subscriber, a
//!   reconnect after a connection found dead by the driver's heartbeat: about 3 s for
//!   [`RedisStore`](crate::store::RedisStore)), every in-process entry is flushed and every
//!   generation is read again before the shared tier is used: staleness after a lost
//!   invalidation is bounded by the heartbeat, never silent.
//! - **Outage.** A store that fails or times out (or whose breaker is open) is skipped: the call
//!   falls back to the in-process tier and in-process coalescing, traced and counted, and never
//!   fails because of the store.

use crate::cache::key::CacheKey;
use crate::cache::local::LocalTier;
use crate::store::breaker::StoreBreaker;
use crate::store::keys::KeyLayout;
use crate::store::{Claimed, Event, FillClaim, Notify, OpId, Store, StoreError, Verb};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify as Wake;

/// The longest a waiting instance goes without asking the store again, whatever the lease says:
/// bounds the delay a lost completion message can cause.
pub(crate) const RECHECK: Duration = Duration::from_millis(500);

/// How long a negative entry (a failed fill's outcome) is kept: long enough for the fleet's
/// waiters to read it, short enough that the next call retries the upstream soon.
pub(crate) const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// The default fill lease: renewed every third while the fetch runs, so it only matters when the
/// leader dies (a waiter takes over within it).
pub const DEFAULT_FILL_LEASE: Duration = Duration::from_secs(3);

/// The largest value a completion message carries. Every process of the fleet receives every
/// message, waiting or not, so a carried value travels once per subscriber instead of once per
/// waiting instance: worth it for the round trip it saves each waiter, up to a size where the
/// fan-out's bytes would cost more than the claims they replace.
pub(crate) const CARRIED_MAX: usize = 64 * 1024;

/// How long fleet generations are kept in the store after their last bump.
const GENERATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The verbs the fleet tier needs; a store without them keeps the two-tier cache of plain
/// `get`/`set` (no fleet coalescing, generations per process).
pub(crate) const VERBS: [Verb; 4] = [Verb::Fill, Verb::Bump, Verb::Publish, Verb::Subscribe];

/// Event messages on the fleet's channel (throttle lease keys share it; they start with the
/// namespace, never with these).
const COMPLETED: &[u8] = b"C|";
/// A completion carrying the stored value: `V|<hex key>|<ttl µs>|<value bytes>`.
const COMPLETED_WITH_VALUE: &[u8] = b"V|";
const INVALIDATED: &[u8] = b"I|";
const RUNTIME_BUMPED: &[u8] = b"G|r|";
const STITCH_BUMPED: &[u8] = b"G|s|";

/// One runtime's fleet tier.
pub(crate) struct FleetCache {
    store: Arc<dyn Store>,
    layout: KeyLayout,
    channel: String,
    breaker: Arc<StoreBreaker>,
    store_timeout: Duration,
    lease: Duration,
    local: Arc<LocalTier>,
    /// This runtime's in-process flights: an exact invalidation from another process must win
    /// over a flight here too.
    flights: Arc<crate::cache::coalesce::Flights>,
    /// The instance waiting on a key (one per key: only the in-process leader waits), and the
    /// events no one was waiting for (see [`Waiting`]).
    waiting: Mutex<Waiting>,
    /// [`Waiting::seq`], readable without the lock: what a claim notes before it is sent.
    events: AtomicU64,
    /// The event listener (started by the first call that uses the shared tier).
    listener: Mutex<Option<Listener>>,
    /// Whether the runtime's generation has been read since the last gap.
    runtime_synced: AtomicBool,
}

struct Listener {
    task: tokio::task::JoinHandle<()>,
    /// Set once the subscription is live: reading a generation before would miss a bump.
    subscribed: Arc<AtomicBool>,
    ready: Arc<Wake>,
    /// Until when callers wait for the first subscription (the store timeout after the start).
    first_wait_until: tokio::time::Instant,
}

impl Drop for FleetCache {
    fn drop(&mut self) {
        if let Some(l) = self.listener.get_mut().ok().and_then(Option::take) {
            l.task.abort();
        }
    }
}

/// What a fill claim decided, for the caller.
pub(crate) enum Claim {
    /// The shared tier had the entry; it expires in `ttl`.
    Hit(Bytes, Duration),
    /// This instance fills, holding the lease.
    Leader(Holding),
    /// Another instance fills for `lease_left` more at most: wait ([`Waiter::wait`], which may
    /// hand over the value), then claim again. `asked` is when this claim was sent.
    Busy {
        /// Until the filler's lease ends.
        lease_left: Duration,
        /// When the claim was sent: a value written after the claim found the fill busy lives
        /// in the store at most its TTL from here.
        asked: tokio::time::Instant,
    },
    /// The store could not be asked (breaker open, error, timeout): fall back to in-process.
    Unavailable,
}

impl FleetCache {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        layout: KeyLayout,
        breaker: Arc<StoreBreaker>,
        store_timeout: Duration,
        lease: Duration,
        local: Arc<LocalTier>,
        flights: Arc<crate::cache::coalesce::Flights>,
    ) -> Arc<Self> {
        Arc::new(FleetCache {
            channel: layout.events(),
            store,
            layout,
            breaker,
            store_timeout,
            lease,
            local,
            flights,
            waiting: Mutex::default(),
            events: AtomicU64::new(0),
            listener: Mutex::new(None),
            runtime_synced: AtomicBool::new(false),
        })
    }

    /// Whether the shared tier may be used for a stitch now: the event subscription is live and
    /// the runtime's and the stitch's fleet generations have been read since the last gap (so
    /// the key this process derives is the fleet's). Reads what is missing, bounded by `limit`;
    /// `false` (use the in-process tier alone) when the store cannot answer.
    pub(crate) async fn sync(
        self: &Arc<Self>,
        stitch: &crate::cache::local::StitchCache,
        limit: Duration,
    ) -> bool {
        if self.runtime_synced.load(Ordering::Acquire) && stitch.fleet_synced() {
            return true;
        }
        if !self.subscribed(limit).await {
            return false;
        }
        if !self.runtime_synced.load(Ordering::Acquire) {
            match self.read_generation(None, limit).await {
                Some(n) => {
                    self.local.adopt_generation(n);
                    self.runtime_synced.store(true, Ordering::Release);
                }
                None => return false,
            }
        }
        if !stitch.fleet_synced() {
            let Some(scope) = stitch.fleet_scope() else {
                return false;
            };
            match self.read_generation(Some(&scope), limit).await {
                Some(n) => stitch.adopt_fleet_generation(n),
                None => return false,
            }
        }
        true
    }

    async fn read_generation(&self, scope: Option<&str>, limit: Duration) -> Option<u64> {
        let key = self.generation_key(scope);
        match self.ask(limit, "get", || self.store.get(&key)).await {
            Ok(None) => Some(0),
            Ok(Some(b)) => std::str::from_utf8(&b).ok()?.trim().parse().ok(),
            Err(e) => {
                if let Some(e) = e {
                    tracing::warn!(error = %e, "could not read a fleet cache generation; using the in-process tier");
                }
                None
            }
        }
    }

    /// The store key of a fleet generation: the runtime's (`None`) or a stitch's.
    fn generation_key(&self, scope: Option<&str>) -> String {
        match scope {
            None => self.layout.generation("rt"),
            Some(s) => self.layout.generation(&format!("s:{s}")),
        }
    }

    /// One store operation behind the runtime's breaker, bounded by `limit`; `Err(None)` when
    /// the breaker is open and the store was not asked.
    async fn ask<'a, T>(
        &self,
        limit: Duration,
        operation: &'static str,
        op: impl FnOnce() -> crate::store::StoreFuture<'a, T>,
    ) -> Result<T, Option<StoreError>> {
        match self.breaker.run(limit, operation, op).await {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(Some(e)),
            None => Err(None),
        }
    }

    /// [`ask`](Self::ask) for the claim (every call that misses the in-process tier): when the
    /// driver bounds each operation by no more than `limit` itself, without a second timer of
    /// our own (a tokio timer takes the runtime's timer-wheel lock to be inserted and again to be
    /// removed, on every call). The breaker is kept as [`StoreBreaker::run`] keeps it: an error
    /// (the driver's timeout included) opens it, an answer closes it.
    async fn ask_once<'a, T>(
        &self,
        limit: Duration,
        operation: &'static str,
        op: impl FnOnce() -> crate::store::StoreFuture<'a, T>,
    ) -> Result<T, Option<StoreError>> {
        if self.store.operation_timeout().is_none_or(|t| t > limit) {
            return self.ask(limit, operation, op).await;
        }
        if !self.breaker.may_ask() {
            return Err(None);
        }
        match op().await {
            Ok(value) => {
                self.breaker.succeeded();
                Ok(value)
            }
            Err(e) => {
                self.breaker.failed();
                Err(Some(e))
            }
        }
    }

    /// Whether the listener's subscription is live. The call that starts the listener waits for
    /// it, at most `limit`; later calls only look (a store that cannot be subscribed to costs
    /// one wait, not one per call: the listener keeps retrying behind).
    async fn subscribed(self: &Arc<Self>, limit: Duration) -> bool {
        let (subscribed, ready, until) = {
            let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
            if listener.as_ref().is_none_or(|l| l.task.is_finished()) {
                let mut l = self.listen();
                l.first_wait_until = tokio::time::Instant::now() + limit;
                *listener = Some(l);
            }
            match listener.as_ref() {
                Some(l) => (l.subscribed.clone(), l.ready.clone(), l.first_wait_until),
                None => return false,
            }
        };
        if subscribed.load(Ordering::Acquire) {
            return true;
        }
        // Callers arriving while the first subscription is being made wait with it (a cold
        // burst coalesces fleet-wide from its first call); later ones only look.
        let limit = until.saturating_duration_since(tokio::time::Instant::now());
        if limit.is_zero() || self.breaker.is_open() {
            return false;
        }
        let notified = ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if subscribed.load(Ordering::Acquire) {
            return true;
        }
        let _ = tokio::time::timeout(limit, notified).await;
        subscribed.load(Ordering::Acquire)
    }

    fn listen(self: &Arc<Self>) -> Listener {
        let subscribed = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(Wake::new());
        let weak = Arc::downgrade(self);
        let (store, channel, limit) =
            (self.store.clone(), self.channel.clone(), self.store_timeout);
        let (flag, wake) = (subscribed.clone(), ready.clone());
        let task = tokio::spawn(async move {
            loop {
                let events = tokio::time::timeout(limit, store.subscribe(&channel)).await;
                if let Ok(Ok(mut events)) = events {
                    flag.store(true, Ordering::Release);
                    wake.notify_waiters();
                    loop {
                        let event = events.next().await;
                        let Some(fleet) = weak.upgrade() else { return };
                        match event {
                            Some(Event::Message(m)) => fleet.on_message(&m),
                            Some(Event::Gap) => fleet.on_gap(),
                            None => {
                                flag.store(false, Ordering::Release);
                                fleet.on_gap();
                                break;
                            }
                        }
                    }
                } else if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                if weak.strong_count() == 0 {
                    return;
                }
            }
        });
        Listener {
            task,
            subscribed,
            ready,
            first_wait_until: tokio::time::Instant::now(),
        }
    }

    fn on_message(&self, message: &Bytes) {
        if message.starts_with(COMPLETED_WITH_VALUE) {
            if let Some((key, carried)) = carried(message) {
                self.wake(&key, Some(carried));
            }
        } else if let Some(hex) = message.strip_prefix(COMPLETED) {
            if let Some(key) = CacheKey::from_hex(hex) {
                self.wake(&key, None);
            }
        } else if let Some(rest) = message.strip_prefix(INVALIDATED) {
            // `<key>|<generation>` (`Store::fill_invalidate` adds the generation); without one
            // (another build's message), every flight of the key counts as invalidated.
            let (hex, generation) = match rest.iter().position(|b| *b == b'|') {
                Some(at) => (&rest[..at], parse(&rest[at + 1..]).unwrap_or(u64::MAX)),
                None => (rest, u64::MAX),
            };
            if let Some(key) = CacheKey::from_hex(hex) {
                self.flights.invalidate_at(&key, generation.max(1));
                self.local.remove_everywhere(&key);
                self.wake(&key, None);
            }
        } else if let Some(n) = message.strip_prefix(RUNTIME_BUMPED) {
            if let Some(n) = parse(n) {
                self.local.adopt_generation(n);
            }
        } else if let Some(rest) = message.strip_prefix(STITCH_BUMPED) {
            let mut parts = rest.rsplitn(2, |b| *b == b'|');
            if let (Some(n), Some(scope)) = (parts.next().and_then(parse), parts.next()) {
                if let Ok(scope) = std::str::from_utf8(scope) {
                    self.local.adopt_stitch_generation(scope, n);
                }
            }
        }
    }

    /// Messages may have been lost: nothing in-process can be trusted to be current. Flush it,
    /// re-read every generation before the shared tier is used again, and wake every waiter.
    /// A value handed over before the gap is not trusted either (an invalidation after it may
    /// be among the lost messages): the waiters claim again.
    fn on_gap(&self) {
        self.runtime_synced.store(false, Ordering::Release);
        self.local.fleet_gap();
        crate::meter::fleet_gap();
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.gap = waiting.event(&self.events);
        for slot in waiting.slots.values() {
            slot.carried
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            slot.wake.notify_one();
        }
    }

    /// Wakes the instance waiting on `key`, if one is, handing it `carried` (a value that rode on
    /// the completion message; nobody else asked for it, so it is not kept).
    fn wake(&self, key: &CacheKey, carried: Option<Carried>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let seq = waiting.event(&self.events);
        match waiting.slots.get(key) {
            Some(slot) => {
                if carried.is_some() {
                    *slot.carried.lock().unwrap_or_else(|e| e.into_inner()) = carried;
                }
                slot.wake.notify_one();
            }
            None => waiting.unheard(seq, *key),
        }
    }

    /// Where events stand now: taken before a claim is sent, so a waiter registered after the
    /// claim's answer ([`Self::waiter_since`]) learns of an event on its key in between.
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.events.load(Ordering::Acquire))
    }

    /// Registers this instance as waiting on `key` until the returned guard is dropped, before
    /// claiming it (the fill loop's later claims).
    pub(crate) fn waiter(self: &Arc<Self>, key: CacheKey) -> Waiter {
        self.register(key, None)
    }

    /// Registers this instance as waiting on `key` after a claim sent at `mark` found it busy.
    /// An event on the key since `mark` (the completion may have come before this registration),
    /// or one that may have been (a gap, or more unheard events than are remembered), is kept as
    /// a wake: the wait ends at once and the caller claims again. Registering only on a busy
    /// answer spares every L2 hit the registry's lock, entry and allocation twice over
    /// (~0.8 K instructions per hit, callgrind, `benches/examples/l2probe.rs`).
    pub(crate) fn waiter_since(self: &Arc<Self>, key: CacheKey, mark: Mark) -> Waiter {
        self.register(key, Some(mark))
    }

    fn register(self: &Arc<Self>, key: CacheKey, since: Option<Mark>) -> Waiter {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let slot = waiting
            .slots
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Slot {
                    wake: Wake::new(),
                    carried: Mutex::new(None),
                })
            })
            .clone();
        if since.is_some_and(|Mark(m)| waiting.missed(m, &key)) {
            slot.wake.notify_one();
        }
        Waiter {
            fleet: self.clone(),
            key,
            slot,
        }
    }

    fn entry_keys(&self, key: &CacheKey) -> crate::store::keys::FillKeySet {
        self.layout.entry_fill(key.hex(&mut [0; 64]))
    }

    /// Claims `key`: the stored value, the fill lease, or who holds it. `limit` bounds the
    /// round trip (the store timeout, or less when the call's budget has less left).
    pub(crate) async fn claim(self: &Arc<Self>, key: CacheKey, limit: Duration) -> Claim {
        let keys = self.entry_keys(&key);
        let holder = OpId::random();
        let claim = FillClaim {
            holder,
            lease_ttl_us: self.lease.as_micros() as u64,
        };
        let asked = tokio::time::Instant::now();
        // Until the store answers, this claim may hold the fill lease without knowing it: if
        // the claim is dropped (its call was cancelled) or its outcome is unknown (a timeout),
        // the lease is given back, so fleet waiters never wait out a lease nobody renews.
        let mut unanswered = Unanswered {
            fleet: self,
            key,
            holder,
            armed: true,
        };
        let claimed = self
            .ask_once(limit, "fill_claim", || {
                self.store.fill_claim(keys.keys(), claim)
            })
            .await;
        // An error's outcome is unknown (a timeout may have run in the store): stays armed.
        unanswered.armed = matches!(claimed, Err(Some(_)));
        drop(unanswered);
        match claimed {
            Ok(Claimed::Hit { value, ttl_us }) => Claim::Hit(value, Duration::from_micros(ttl_us)),
            Ok(Claimed::Leader { generation }) => {
                Claim::Leader(Holding::start(self.clone(), key, holder, generation))
            }
            Ok(Claimed::Busy { lease_ends_in_us }) => Claim::Busy {
                lease_left: Duration::from_micros(lease_ends_in_us),
                asked,
            },
            Err(e) => {
                if let Some(e) = e {
                    tracing::warn!(error = %e, "fleet cache claim failed; using the in-process tier");
                }
                Claim::Unavailable
            }
        }
    }

    /// Deletes `key`'s shared entry and fill lease and bumps its generation, fleet-wide, in one
    /// step; every process drops it from its in-process tier. Whether an entry existed.
    pub(crate) async fn invalidate(&self, key: &CacheKey) -> Result<bool, Option<StoreError>> {
        let keys = self.entry_keys(key);
        let notify = Notify {
            channel: &self.channel,
            message: message(INVALIDATED, key),
        };
        self.ask(self.store_timeout, "fill_invalidate", || {
            self.store.fill_invalidate(keys.keys(), Some(notify))
        })
        .await
    }

    /// Bumps a fleet generation (`scope`: `None` for the runtime's, `Some(stitch scope)`), and
    /// returns the new value; every process flushes that scope when the notification arrives.
    pub(crate) async fn bump(&self, scope: Option<&str>) -> Result<u64, Option<StoreError>> {
        let key = self.generation_key(scope);
        // The store appends the new value: `G|r|<n>` or `G|s|<scope>|<n>`.
        let message = match scope {
            None => Bytes::from_static(RUNTIME_BUMPED),
            Some(s) => Bytes::from([STITCH_BUMPED, s.as_bytes(), b"|"].concat()),
        };
        let notify = Notify {
            channel: &self.channel,
            message,
        };
        self.ask(self.store_timeout, "bump", || {
            self.store.bump(&key, GENERATION_TTL, notify)
        })
        .await
    }
}

fn parse(n: &[u8]) -> Option<u64> {
    std::str::from_utf8(n).ok()?.parse().ok()
}

fn message(kind: &[u8], key: &CacheKey) -> Bytes {
    let mut m = Vec::with_capacity(kind.len() + 64);
    m.extend_from_slice(kind);
    m.extend_from_slice(key.hex(&mut [0; 64]).as_bytes());
    Bytes::from(m)
}

/// The prefix of a completion carrying its value, `V|<hex key>|<ttl µs>|`: the store appends the
/// value when it stored it.
fn value_message(key: &CacheKey, ttl: Duration) -> Bytes {
    let mut m = message(COMPLETED_WITH_VALUE, key).to_vec();
    m.push(b'|');
    m.extend_from_slice(ttl.as_micros().to_string().as_bytes());
    m.push(b'|');
    Bytes::from(m)
}

/// The key and the value of a `V|<hex key>|<ttl µs>|<value>` message (the value a slice of it,
/// not a copy); `None` for anything else.
fn carried(message: &Bytes) -> Option<(CacheKey, Carried)> {
    let rest = message.strip_prefix(COMPLETED_WITH_VALUE)?;
    let key = CacheKey::from_hex(rest.get(..64)?)?;
    let rest = rest.get(64..)?.strip_prefix(b"|")?;
    let bar = rest.iter().position(|b| *b == b'|')?;
    let ttl = Duration::from_micros(parse(&rest[..bar])?);
    let value = message.slice(message.len() - rest.len() + bar + 1..);
    let received = tokio::time::Instant::now();
    Some((
        key,
        Carried {
            value,
            ttl,
            received,
        },
    ))
}

/// Events no one in this process was waiting for, remembered.
const UNHEARD: usize = 64;

/// The waiting instances by key (hashed as the flights are, `coalesce.rs`: seeded foldhash over
/// a digest), and enough of the recent events to tell a waiter registered late whether it missed
/// one: events are numbered; a claim notes the number before it is sent ([`Mark`]).
#[derive(Default)]
struct Waiting {
    slots: crate::fasthash::FastMap<CacheKey, Arc<Slot>>,
    /// Events so far: completions, invalidations and gaps.
    seq: u64,
    /// The number of the last gap (every key may have missed an event).
    gap: u64,
    /// The last [`UNHEARD`] events on keys no one was waiting on, oldest first.
    unheard: std::collections::VecDeque<(u64, CacheKey)>,
    /// The number of the newest event dropped from `unheard`.
    forgotten: u64,
}

impl Waiting {
    /// Numbers a new event (published to `events` too).
    fn event(&mut self, events: &AtomicU64) -> u64 {
        self.seq += 1;
        events.store(self.seq, Ordering::Release);
        self.seq
    }

    fn unheard(&mut self, seq: u64, key: CacheKey) {
        if self.unheard.len() == UNHEARD {
            if let Some((dropped, _)) = self.unheard.pop_front() {
                self.forgotten = dropped;
            }
        }
        self.unheard.push_back((seq, key));
    }

    /// Whether `key` had, or may have had, an event after `mark`.
    fn missed(&self, mark: u64, key: &CacheKey) -> bool {
        self.gap > mark
            || self.forgotten > mark
            || self
                .unheard
                .iter()
                .rev()
                .take_while(|(seq, _)| *seq > mark)
                .any(|(_, k)| k == key)
    }
}

/// Where events stood when a claim was sent (see [`FleetCache::mark`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark(u64);

/// Where the event listener leaves what the instance waiting on a key needs.
struct Slot {
    wake: Wake,
    /// The value the last completion carried, until the waiter takes it.
    carried: Mutex<Option<Carried>>,
}

/// A value taken from a completion message: exactly what the store holds.
struct Carried {
    value: Bytes,
    /// How long the store keeps it, from its write.
    ttl: Duration,
    /// When the message arrived here.
    received: tokio::time::Instant,
}

/// This instance waiting on a key; unregisters on drop.
pub(crate) struct Waiter {
    fleet: Arc<FleetCache>,
    key: CacheKey,
    slot: Arc<Slot>,
}

impl Waiter {
    /// Waits for a completion (or invalidation, or gap) on the key, at most `wait`, after a claim
    /// sent at `asked` found the fill busy. When the completion carried the value, returns it
    /// with what is left of its TTL counted from `asked`: the write came after that claim (a
    /// value stored before it would have been its answer), so the in-process tier never keeps
    /// it longer than the store. A value that arrived before `asked` answered an earlier claim's
    /// wait and is not taken (the claim since said busy: the store no longer holds it).
    pub(crate) async fn wait(
        &self,
        wait: Duration,
        asked: tokio::time::Instant,
    ) -> Option<(Bytes, Duration)> {
        let _ = tokio::time::timeout(wait, self.slot.wake.notified()).await;
        let carried = self
            .slot
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        if carried.received < asked {
            return None;
        }
        let ttl = carried.ttl.saturating_sub(asked.elapsed());
        Some((carried.value, ttl))
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiting = self.fleet.waiting.lock().unwrap_or_else(|e| e.into_inner());
        // One lookup.
        if let std::collections::hash_map::Entry::Occupied(w) = waiting.slots.entry(self.key) {
            if Arc::ptr_eq(w.get(), &self.slot) {
                w.remove();
            }
        }
    }
}

/// The fill lease of one key, held while this instance fetches: renewed every third of its TTL;
/// completed with a value or a negative entry, or given back when dropped without an outcome
/// (the flight was cancelled), so fleet waiters never wait out a lease nobody works under.
pub(crate) struct Holding {
    fleet: Arc<FleetCache>,
    key: CacheKey,
    holder: OpId,
    generation: u64,
    /// Cleared when a renewal finds the lease gone (expired or invalidated).
    held: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
    finished: bool,
}

impl Holding {
    fn start(fleet: Arc<FleetCache>, key: CacheKey, holder: OpId, generation: u64) -> Holding {
        let held = Arc::new(AtomicBool::new(true));
        let renewer = {
            let (weak, held) = (Arc::downgrade(&fleet), held.clone());
            tokio::spawn(renew(weak, key, holder, held))
        };
        Holding {
            fleet,
            key,
            holder,
            generation,
            held,
            renewer,
            finished: false,
        }
    }

    /// Whether the lease is still this instance's as far as the last renewal knows.
    pub(crate) fn still_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// The fill generation the lease was claimed at.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Stores `value` for `ttl` (fenced) and wakes the fleet's waiters. Runs behind the call: on
    /// its own task, so neither the leader nor the in-process followers wait for the write.
    pub(crate) fn complete(mut self, value: Bytes, ttl: Duration) {
        self.finished = true;
        self.renewer.abort();
        let (fleet, key, holder, generation) =
            (self.fleet.clone(), self.key, self.holder, self.generation);
        spawn(async move {
            let keys = fleet.entry_keys(&key);
            // Small values ride on the notification (see the module docs).
            let value_message = (value.len() <= CARRIED_MAX).then(|| value_message(&key, ttl));
            let fill = crate::store::Fill {
                holder,
                generation,
                value,
                ttl,
                notify: Some(Notify {
                    channel: &fleet.channel,
                    message: message(COMPLETED, &key),
                }),
                value_message,
            };
            let done = fleet
                .ask(fleet.store_timeout, "fill_complete", || {
                    fleet.store.fill_complete(keys.keys(), fill)
                })
                .await;
            match done {
                Ok(true) => {}
                Ok(false) => crate::meter::fleet_fill_fenced(),
                Err(e) => {
                    if let Some(e) = e {
                        tracing::warn!(error = %e, "fleet cache write failed; waiters fetch on their own after the lease");
                    }
                    crate::meter::fleet_store_error("fill_complete");
                }
            }
        });
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.renewer.abort();
        if self.finished {
            return;
        }
        abandon(&self.fleet, self.key, self.holder);
    }
}

/// A fill claim sent and not (yet) answered; gives back the lease it may have taken when
/// dropped armed.
struct Unanswered<'a> {
    fleet: &'a Arc<FleetCache>,
    key: CacheKey,
    holder: OpId,
    /// Cleared once the store answered: what the claim took is known (a lease is then held by
    /// a [`Holding`]). An unasked claim (the breaker was open) took nothing either.
    armed: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.armed {
            abandon(self.fleet, self.key, self.holder);
        }
    }
}

/// Gives `key`'s fill lease back if `holder` holds it, behind the call, and wakes the fleet's
/// waiters so one takes over at once (the store does nothing when another holds it).
fn abandon(fleet: &Arc<FleetCache>, key: CacheKey, holder: OpId) {
    let fleet = fleet.clone();
    spawn(async move {
        let keys = fleet.entry_keys(&key);
        let notify = Notify {
            channel: &fleet.channel,
            message: message(COMPLETED, &key),
        };
        let _ = fleet
            .ask(fleet.store_timeout, "fill_abandon", || {
                fleet.store.fill_abandon(keys.keys(), holder, Some(notify))
            })
            .await;
    });
}

async fn renew(fleet: Weak<FleetCache>, key: CacheKey, holder: OpId, held: Arc<AtomicBool>) {
    loop {
        let (every, ttl_us) = match fleet.upgrade() {
            Some(f) => (f.lease / 3, f.lease.as_micros() as u64),
            None => return,
        };
        tokio::time::sleep(every.max(Duration::from_millis(1))).await;
        let Some(f) = fleet.upgrade() else { return };
        let keys = f.entry_keys(&key);
        let renewed = f
            .ask(f.store_timeout, "fill_renew", || {
                f.store.fill_renew(keys.keys(), holder, ttl_us)
            })
            .await;
        // An unknown outcome keeps trying: the completion is fenced anyway.
        if matches!(renewed, Ok(false)) {
            held.store(false, Ordering::Release);
            return;
        }
    }
}

/// Runs store work behind the call (on its own task when there is a tokio runtime).
fn spawn(work: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        drop(handle.spawn(work));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_messages_name_the_key_they_were_made_for() {
        let key = CacheKey([0xa7; 32]);
        let m = message(INVALIDATED, &key);
        let hex = m.strip_prefix(INVALIDATED).expect("prefixed");
        assert_eq!(CacheKey::from_hex(hex), Some(key));
        assert_eq!(CacheKey::from_hex(&hex[1..]), None, "short");
        assert_eq!(CacheKey::from_hex(&[b'g'; 64]), None, "not hex");
        assert_eq!(
            CacheKey::from_hex(&[b'A'; 64]),
            None,
            "upper case is not ours"
        );
    }

    #[tokio::test]
    async fn a_carried_value_is_read_back_as_the_store_appended_it() {
        let key = CacheKey([0x3c; 32]);
        let ttl = Duration::from_micros(59_999_123);
        // The value may hold the separator: only the first two after the key delimit.
        let value = b"\x01|body|with|bars".as_slice();
        let message = Bytes::from([&value_message(&key, ttl)[..], value].concat());
        let (got, c) = carried(&message).expect("a well-formed message");
        assert_eq!(got, key);
        assert_eq!(c.ttl, ttl);
        assert_eq!(&c.value[..], value);
        let empty = Bytes::from(value_message(&key, ttl).to_vec());
        assert_eq!(
            carried_value(&empty).as_deref(),
            Some(&b""[..]),
            "an empty value"
        );
        let hex = [b'a'; 64];
        let bad: [&[u8]; 6] = [
            b"V|",
            &message[..65],
            &message[..67],
            b"V|not-a-key|1|x",
            &[&b"V|"[..], &hex[..], &b"|nan|x"[..]].concat(),
            &[&b"V|"[..], &hex[..], &b"1|x"[..]].concat(),
        ];
        for bad in bad {
            assert!(
                carried(&Bytes::copy_from_slice(bad)).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn carried_value(message: &Bytes) -> Option<Bytes> {
        carried(message).map(|(_, c)| c.value)
    }

    /// A waiter registered after its claim's answer (only a busy claim registers) learns of an
    /// event on its key since the claim was sent, of a gap, and of events it cannot rule out.
    #[test]
    fn a_late_waiter_learns_of_the_events_it_may_have_missed() {
        let events = AtomicU64::new(0);
        let (a, b) = (CacheKey([1; 32]), CacheKey([2; 32]));
        let mut w = Waiting::default();
        let mark = events.load(Ordering::Acquire);
        let seq = w.event(&events);
        w.unheard(seq, a);
        assert!(w.missed(mark, &a), "a completion of `a` after the mark");
        assert!(!w.missed(mark, &b), "nothing happened to `b`");
        assert!(
            !w.missed(events.load(Ordering::Acquire), &a),
            "nothing since"
        );

        let mark = events.load(Ordering::Acquire);
        w.gap = w.event(&events);
        assert!(w.missed(mark, &b), "a gap may have taken any key's event");
        assert!(!w.missed(events.load(Ordering::Acquire), &b));

        // More unheard events than are remembered: the oldest may have been `b`'s.
        let mark = events.load(Ordering::Acquire);
        for i in 0..=UNHEARD {
            let seq = w.event(&events);
            w.unheard(seq, CacheKey([100 + i as u8; 32]));
        }
        assert_eq!(w.unheard.len(), UNHEARD, "bounded");
        assert!(w.missed(mark, &b), "forgotten events count as missed");
        let mark = events.load(Ordering::Acquire);
        let seq = w.event(&events);
        w.unheard(seq, a);
        assert!(!w.missed(mark, &b), "only what came after the mark counts");
        assert!(w.missed(mark, &a));
    }
}
