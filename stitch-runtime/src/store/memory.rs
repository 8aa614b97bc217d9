//! An in-process [`Store`] implementing every verb: bounded (moka), with per-entry expiry on
//! tokio's clock. Shared between runtimes of one process it behaves like a shared store, which is
//! how the cache's cross-runtime behaviour and every fleet protocol are tested without a network.
//!
//! Atomicity: reads go straight to the map; every write takes one mutex, so a compound verb
//! (read, decide, write) is never interleaved with another write. Idempotency markers are kept
//! under the same keys a networked driver uses (`keys::marker`).

use super::vocab::{circuit_step, circuit_ttl, FILL_GENERATION_KEEP, RETRY_WINDOW};
use super::{
    keys, Cas, CircuitEvent, CircuitReply, CircuitStep, Claimed, Decision, Fill, FillClaim,
    FillKeys, Gcra, LeaseDecision, LeaseGrant, LeaseRequest, Notify, OpId, Reservation, Store,
    StoreError, StoreFuture, Subscription, Verbs,
};
use super::{Admission, LeaseReservation};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// An in-process store. Clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    entries: moka::sync::Cache<String, Entry>,
    /// Serializes writes (see the module docs).
    writes: Mutex<()>,
    channels: Mutex<HashMap<String, broadcast::Sender<Bytes>>>,
    /// The store clock's zero.
    origin: Instant,
}

#[derive(Clone)]
struct Entry {
    value: Value,
    /// Store time (µs) at which the entry is gone.
    expires: u64,
}

#[derive(Clone)]
enum Value {
    Bytes(Bytes),
    /// Lease holders and their expiries (store µs). Few (a concurrency limit), so a vector.
    Holders(Arc<Vec<(OpId, u64)>>),
}

/// How many messages a slow subscriber may fall behind before it sees `Event::Gap`.
const CHANNEL_CAPACITY: usize = 1024;

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.shared.entries.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_entries` values (counters, budgets and markers included).
    pub fn new(max_entries: u64) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                entries: moka::sync::Cache::new(max_entries),
                writes: Mutex::new(()),
                channels: Mutex::new(HashMap::new()),
                origin: Instant::now(),
            }),
        }
    }

    fn now(&self) -> u64 {
        // +1 so that no live entry can have expiry 0 and "now" is never before the origin.
        self.shared.origin.elapsed().as_micros() as u64 + 1
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // A panic while holding the lock cannot leave the map half-written (each write is one
        // `insert`), so a poisoned lock is still usable.
        self.shared.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, key: &str, now: u64) -> Option<Value> {
        match self.shared.entries.get(key) {
            Some(e) if now < e.expires => Some(e.value),
            Some(_) => {
                self.shared.entries.invalidate(key);
                None
            }
            None => None,
        }
    }

    fn live_bytes(
        &self,
        op: &'static str,
        key: &str,
        now: u64,
    ) -> Result<Option<Bytes>, StoreError> {
        match self.live(key, now) {
            Some(Value::Bytes(b)) => Ok(Some(b)),
            Some(Value::Holders(_)) => Err(wrong_type(op, key)),
            None => Ok(None),
        }
    }

    fn put(&self, key: &str, value: Value, expires: u64) {
        self.shared
            .entries
            .insert(key.to_owned(), Entry { value, expires });
    }

    fn remaining(&self, key: &str) -> Option<u64> {
        self.shared.entries.get(key).map(|e| e.expires)
    }

    fn mark(&self, key: &str, op: OpId, value: Bytes, now: u64, extra: u64) {
        self.put(
            &keys::marker(key, op),
            Value::Bytes(value),
            now.saturating_add(extra)
                .saturating_add(RETRY_WINDOW.as_micros() as u64),
        );
    }

    fn marked(&self, key: &str, op: OpId, now: u64) -> Option<Bytes> {
        match self.live(&keys::marker(key, op), now) {
            Some(Value::Bytes(b)) => Some(b),
            _ => None,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(100_000)
    }
}

fn us(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

fn wrong_type(op: &'static str, key: &str) -> StoreError {
    StoreError::protocol(op, format!("`{key}` holds a value of another kind"))
}

fn int(op: &'static str, b: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::protocol(op, "value is not an integer"))
}

fn ready<'a, T: Send + 'a>(r: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(r))
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        ready(self.live_bytes("get", key, self.now()))
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        let _w = self.lock();
        self.put(key, Value::Bytes(value), self.now() + us(ttl));
        ready(Ok(()))
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        let existed = self.live(key, now).is_some();
        self.shared.entries.invalidate(key);
        ready(Ok(existed))
    }

    fn capabilities(&self) -> Verbs {
        Verbs::all()
    }

    fn time(&self) -> StoreFuture<'_, u64> {
        ready(Ok(self.now()))
    }

    fn increment<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, i64> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            if let Some(done) = self.marked(key, op, now) {
                return int("increment", &done);
            }
            let (value, expires) = match self.live_bytes("increment", key, now)? {
                Some(b) => (int("increment", &b)?, self.remaining(key).unwrap_or(now)),
                None => (0, now.saturating_add(us(ttl))),
            };
            let value = value
                .checked_add(by)
                .ok_or_else(|| StoreError::protocol("increment", "increment would overflow"))?;
            let text = Bytes::from(value.to_string());
            self.put(key, Value::Bytes(text.clone()), expires);
            self.mark(key, op, text, now, 0);
            Ok(value)
        })())
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        if self.marked(key, op, now).is_some() {
            return ready(Ok(true));
        }
        if self.live(key, now).is_some() {
            return ready(Ok(false));
        }
        self.put(key, Value::Bytes(value), now.saturating_add(us(ttl)));
        self.mark(key, op, Bytes::from_static(b"1"), now, 0);
        ready(Ok(true))
    }

    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Bytes,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, Cas> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            if self.marked(key, op, now).is_some() {
                return Ok(Cas::Swapped);
            }
            let current = self.live_bytes("compare_and_set", key, now)?;
            if current.as_deref() != expected {
                return Ok(Cas::Conflict { current });
            }
            self.put(key, Value::Bytes(new), now.saturating_add(us(ttl)));
            self.mark(key, op, Bytes::from_static(b"1"), now, 0);
            Ok(Cas::Swapped)
        })())
    }

    fn reserve<'a>(&'a self, key: &'a str, gcra: Gcra) -> StoreFuture<'a, Reservation> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let decided = |grant: u64| Reservation {
                decision: if grant <= now {
                    Decision::Granted { at: grant }
                } else {
                    Decision::WaitUntil(grant)
                },
                store_time: now,
            };
            if let Some(done) = self.marked(key, gcra.id, now) {
                return Ok(decided(int("reserve", &done)? as u64));
            }
            let tat = match self.live_bytes("reserve", key, now)? {
                Some(b) => int("reserve", &b)? as u64,
                None => 0,
            };
            let interval = gcra.interval_us.max(1);
            let grant = now.max(tat.saturating_sub(gcra.tolerance_us));
            let wait = grant - now;
            if gcra.max_wait_us.is_some_and(|m| wait > m) {
                return Ok(Reservation {
                    decision: Decision::Refused { wait_us: wait },
                    store_time: now,
                });
            }
            let next = tat.max(grant).saturating_add(interval);
            // The state is needed only while it can still delay someone (TAT in the future).
            self.put(key, Value::Bytes(Bytes::from(next.to_string())), next);
            self.mark(key, gcra.id, Bytes::from(grant.to_string()), now, wait);
            Ok(decided(grant))
        })())
    }

    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        lease: LeaseRequest,
    ) -> StoreFuture<'a, LeaseGrant> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let mut holders: Vec<(OpId, u64)> = match self.live(key, now) {
                Some(Value::Holders(h)) => h.iter().copied().filter(|(_, e)| *e > now).collect(),
                Some(Value::Bytes(_)) => return Err(wrong_type("lease_acquire", key)),
                None => Vec::new(),
            };
            let expires_at = now.saturating_add(lease.ttl_us.max(1));
            let decision = if let Some(h) = holders.iter_mut().find(|(id, _)| *id == lease.holder) {
                h.1 = expires_at;
                LeaseDecision::Acquired { expires_at }
            } else if holders.len() < lease.limit as usize {
                holders.push((lease.holder, expires_at));
                LeaseDecision::Acquired { expires_at }
            } else {
                let next_expiry = holders.iter().map(|(_, e)| *e).min().unwrap_or(now);
                LeaseDecision::Full { next_expiry }
            };
            self.store_holders(key, holders);
            Ok(LeaseGrant {
                decision,
                store_time: now,
            })
        })())
    }

    fn lease_renew<'a>(&'a self, key: &'a str, holder: OpId, ttl_us: u64) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let mut holders: Vec<(OpId, u64)> = match self.live(key, now) {
                Some(Value::Holders(h)) => h.iter().copied().filter(|(_, e)| *e > now).collect(),
                Some(Value::Bytes(_)) => return Err(wrong_type("lease_renew", key)),
                None => return Ok(false),
            };
            let held = match holders.iter_mut().find(|(id, _)| *id == holder) {
                Some(h) => {
                    h.1 = now.saturating_add(ttl_us.max(1));
                    true
                }
                None => false,
            };
            self.store_holders(key, holders);
            Ok(held)
        })())
    }

    fn lease_release<'a>(
        &'a self,
        key: &'a str,
        holder: OpId,
        notify: Option<&'a str>,
    ) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let mut holders: Vec<(OpId, u64)> = match self.live(key, now) {
                Some(Value::Holders(h)) => h.iter().copied().filter(|(_, e)| *e > now).collect(),
                Some(Value::Bytes(_)) => return Err(wrong_type("lease_release", key)),
                None => return Ok(false),
            };
            let before = holders.len();
            holders.retain(|(id, _)| *id != holder);
            let released = holders.len() < before;
            self.store_holders(key, holders);
            if released {
                if let Some(channel) = notify {
                    self.send(channel, Bytes::copy_from_slice(key.as_bytes()));
                }
            }
            Ok(released)
        })())
    }

    fn lease_reserve<'a>(
        &'a self,
        leases: &'a str,
        tat: &'a str,
        lease: LeaseRequest,
        gcra: Gcra,
    ) -> StoreFuture<'a, LeaseReservation> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let mut holders: Vec<(OpId, u64)> = match self.live(leases, now) {
                Some(Value::Holders(h)) => h.iter().copied().filter(|(_, e)| *e > now).collect(),
                Some(Value::Bytes(_)) => return Err(wrong_type("lease_reserve", leases)),
                None => Vec::new(),
            };
            let answer = |decision| {
                Ok(LeaseReservation {
                    decision,
                    store_time: now,
                })
            };
            let held = holders.iter().position(|(id, _)| *id == lease.holder);
            if held.is_none() && holders.len() >= lease.limit as usize {
                let next_expiry = holders.iter().map(|(_, e)| *e).min().unwrap_or(now);
                return answer(Admission::Full { next_expiry });
            }
            // A retry of a request that reserved is answered with its slot, never refused.
            let at = match self.marked(tat, gcra.id, now) {
                Some(done) => int("lease_reserve", &done)? as u64,
                None => {
                    let state = match self.live_bytes("lease_reserve", tat, now)? {
                        Some(b) => int("lease_reserve", &b)? as u64,
                        None => 0,
                    };
                    let at = now.max(state.saturating_sub(gcra.tolerance_us));
                    let wait = at - now;
                    if gcra.max_wait_us.is_some_and(|m| wait > m) {
                        return answer(Admission::Refused { wait_us: wait });
                    }
                    let next = state.max(at).saturating_add(gcra.interval_us.max(1));
                    self.put(tat, Value::Bytes(Bytes::from(next.to_string())), next);
                    self.mark(tat, gcra.id, Bytes::from(at.to_string()), now, wait);
                    at
                }
            };
            let expires_at = now.saturating_add(lease.ttl_us.max(1));
            match held {
                Some(i) => holders[i].1 = expires_at,
                None => holders.push((lease.holder, expires_at)),
            }
            self.store_holders(leases, holders);
            answer(Admission::Admitted { expires_at, at })
        })())
    }

    fn circuit<'a>(&'a self, key: &'a str, step: CircuitStep) -> StoreFuture<'a, CircuitReply> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let current = self.live_bytes("circuit", key, now)?;
            let retried =
                step.event == CircuitEvent::Failure && self.marked(key, step.id, now).is_some();
            if retried {
                // Counted already: answer with the state as it is, writing nothing.
                let look = CircuitStep {
                    event: CircuitEvent::Admit,
                    ..step
                };
                return Ok(circuit_step(current.as_deref(), &look, now).1);
            }
            let (write, reply) = circuit_step(current.as_deref(), &step, now);
            match write {
                Some(Some(v)) => self.put(
                    key,
                    Value::Bytes(Bytes::from(v)),
                    now.saturating_add(us(circuit_ttl(&step))),
                ),
                Some(None) => self.shared.entries.invalidate(key),
                None => {}
            }
            if step.event == CircuitEvent::Failure {
                self.mark(key, step.id, Bytes::from_static(b"1"), now, 0);
            }
            Ok(reply)
        })())
    }

    fn fill_claim<'a>(&'a self, keys: FillKeys<'a>, claim: FillClaim) -> StoreFuture<'a, Claimed> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            if let Some(value) = self.live_bytes("fill_claim", keys.value, now)? {
                let expires = self.remaining(keys.value).unwrap_or(now);
                return Ok(Claimed::Hit {
                    value,
                    ttl_us: expires.saturating_sub(now).max(1),
                });
            }
            if let Some(lease) = self.live_bytes("fill_claim", keys.lease, now)? {
                let (holder, waited) = lease_parts(&lease);
                if holder != claim.holder.to_string().as_bytes() {
                    let expires = self.remaining(keys.lease).unwrap_or(now);
                    if !waited {
                        // Someone waits for this fill now: its completion carries the value.
                        let marked = [holder, WAITED].concat();
                        self.put(keys.lease, Value::Bytes(Bytes::from(marked)), expires);
                    }
                    return Ok(Claimed::Busy {
                        lease_ends_in_us: expires.saturating_sub(now).max(1),
                    });
                }
            }
            let generation = self.hold_fill(keys, claim.holder, claim.lease_ttl_us, now)?;
            Ok(Claimed::Leader { generation })
        })())
    }

    fn fill_renew<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        ttl_us: u64,
    ) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            if !self.fill_held(keys, holder, now)? {
                return Ok(false);
            }
            self.hold_fill(keys, holder, ttl_us, now)?;
            Ok(true)
        })())
    }

    fn fill_complete<'a>(&'a self, keys: FillKeys<'a>, fill: Fill<'a>) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let generation = Bytes::from(fill.generation.to_string());
            // The marker holds the generation stored at, so a holder id reused for a later fill
            // (after an invalidation) is not answered by an old completion.
            if self.marked(keys.value, fill.holder, now).as_ref() == Some(&generation) {
                return Ok(true);
            }
            let held = self.fill_held(keys, fill.holder, now)?;
            let waited = self
                .live_bytes("fill", keys.lease, now)?
                .is_some_and(|l| lease_parts(&l).1);
            let current = self.fill_generation(keys, now)?;
            let stored = held && current == fill.generation;
            if stored {
                self.put(
                    keys.value,
                    Value::Bytes(fill.value.clone()),
                    now.saturating_add(us(fill.ttl)),
                );
                self.mark(keys.value, fill.holder, generation, now, 0);
            }
            if held {
                self.shared.entries.invalidate(keys.lease);
            }
            match (fill.notify, fill.value_message) {
                // Only a stored value is carried (the message's value is the store's), and only
                // when someone waits for it.
                (Some(notify), Some(prefix)) if stored && waited => {
                    let mut message = Vec::with_capacity(prefix.len() + fill.value.len());
                    message.extend_from_slice(&prefix);
                    message.extend_from_slice(&fill.value);
                    self.send(notify.channel, Bytes::from(message));
                }
                (notify, _) => self.notify(notify),
            }
            Ok(stored)
        })())
    }

    fn fill_abandon<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            if !self.fill_held(keys, holder, now)? {
                return Ok(false);
            }
            self.shared.entries.invalidate(keys.lease);
            self.notify(notify);
            Ok(true)
        })())
    }

    fn fill_invalidate<'a>(
        &'a self,
        keys: FillKeys<'a>,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let existed = self
                .live_bytes("fill_invalidate", keys.value, now)?
                .is_some();
            self.invalidate_fill(keys, now, notify, true)?;
            Ok(existed)
        })())
    }

    fn fill_invalidate_if<'a>(
        &'a self,
        keys: FillKeys<'a>,
        expected: &'a [u8],
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let current = self.live_bytes("fill_invalidate_if", keys.value, now)?;
            if current.as_deref() != Some(expected) {
                return Ok(false);
            }
            self.invalidate_fill(keys, now, notify, false)?;
            Ok(true)
        })())
    }

    fn bump<'a>(&'a self, key: &'a str, ttl: Duration, notify: Notify<'a>) -> StoreFuture<'a, u64> {
        let _w = self.lock();
        let now = self.now();
        ready((|| {
            let current = match self.live_bytes("bump", key, now)? {
                Some(b) => u64::try_from(int("bump", &b)?)
                    .map_err(|_| StoreError::protocol("bump", "value is negative"))?,
                None => 0,
            };
            let next = current
                .checked_add(1)
                .ok_or_else(|| StoreError::protocol("bump", "bump would overflow"))?;
            let text = next.to_string();
            self.put(
                key,
                Value::Bytes(Bytes::from(text.clone())),
                now.saturating_add(us(ttl)),
            );
            let mut message = Vec::with_capacity(notify.message.len() + text.len());
            message.extend_from_slice(&notify.message);
            message.extend_from_slice(text.as_bytes());
            self.send(notify.channel, Bytes::from(message));
            Ok(next)
        })())
    }

    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> StoreFuture<'a, ()> {
        self.send(channel, message);
        ready(Ok(()))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, Subscription> {
        let mut channels = self
            .shared
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Channels nobody listens to any more are dropped here, so they do not accumulate.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        let rx = channels
            .entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        ready(Ok(Subscription::from_broadcast(rx)))
    }
}

impl MemoryStore {
    /// Writes a holder set back: gone when empty, otherwise living as long as its last holder.
    fn store_holders(&self, key: &str, holders: Vec<(OpId, u64)>) {
        match holders.iter().map(|(_, e)| *e).max() {
            Some(last) => self.put(key, Value::Holders(Arc::new(holders)), last),
            None => self.shared.entries.invalidate(key),
        }
    }

    /// Whether `holder` holds the fill lease of `keys` (unexpired).
    fn fill_held(&self, keys: FillKeys<'_>, holder: OpId, now: u64) -> Result<bool, StoreError> {
        Ok(self
            .live_bytes("fill", keys.lease, now)?
            .is_some_and(|l| lease_parts(&l).0 == holder.to_string().as_bytes()))
    }

    /// The fill generation of `keys` (absent: 0).
    fn fill_generation(&self, keys: FillKeys<'_>, now: u64) -> Result<u64, StoreError> {
        match self.live_bytes("fill", keys.generation, now)? {
            Some(b) => u64::try_from(int("fill", &b)?)
                .map_err(|_| StoreError::protocol("fill", "generation is negative")),
            None => Ok(0),
        }
    }

    /// Invalidates the fill of `keys`: its value and lease go, its generation moves on (so a
    /// holder that started before cannot store), and `notify` is published.
    /// `fill_invalidate` (`with_generation`: the message says the new generation) and
    /// `fill_invalidate_if`.
    fn invalidate_fill(
        &self,
        keys: FillKeys<'_>,
        now: u64,
        notify: Option<Notify<'_>>,
        with_generation: bool,
    ) -> Result<(), StoreError> {
        let next = self.fill_generation(keys, now)?.saturating_add(1);
        self.shared.entries.invalidate(keys.value);
        self.shared.entries.invalidate(keys.lease);
        self.put(
            keys.generation,
            Value::Bytes(Bytes::from(next.to_string())),
            now.saturating_add(us(FILL_GENERATION_KEEP)),
        );
        self.notify(notify.map(|n| {
            if !with_generation {
                return n;
            }
            let message = [&n.message[..], b"|", next.to_string().as_bytes()].concat();
            Notify {
                channel: n.channel,
                message: Bytes::from(message),
            }
        }));
        Ok(())
    }

    /// Gives the fill lease of `keys` to `holder` for `ttl_us`, keeping the generation at least
    /// as long as the lease it fences (plus the retry window); returns the generation.
    fn hold_fill(
        &self,
        keys: FillKeys<'_>,
        holder: OpId,
        ttl_us: u64,
        now: u64,
    ) -> Result<u64, StoreError> {
        let expires = now.saturating_add(ttl_us.max(1));
        let mut lease = holder.to_string().into_bytes();
        // A renewal (or the holder's repeated claim) keeps the mark of a waiting claimant.
        if self
            .live_bytes("fill", keys.lease, now)?
            .is_some_and(|l| lease_parts(&l) == (&lease[..], true))
        {
            lease.extend_from_slice(WAITED);
        }
        self.put(keys.lease, Value::Bytes(Bytes::from(lease)), expires);
        let generation = self.fill_generation(keys, now)?;
        let keep = expires.saturating_add(us(RETRY_WINDOW));
        if let Some(Entry { value, expires: e }) = self.shared.entries.get(keys.generation) {
            if e < keep {
                self.put(keys.generation, value, keep);
            }
        }
        Ok(generation)
    }

    fn notify(&self, notify: Option<Notify<'_>>) {
        if let Some(n) = notify {
            self.send(n.channel, n.message);
        }
    }

    fn send(&self, channel: &str, message: Bytes) {
        let channels = self
            .shared
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = channels.get(channel) {
            // No receiver: nobody to tell, as with any pub/sub.
            let _ = tx.send(message);
        }
    }
}

/// Marks a fill lease that another claimant found busy: `<holder><WAITED>`.
const WAITED: &[u8] = b":w";

/// A fill lease's holder, and whether another claimant found it busy (someone waits for the
/// value: its completion carries it).
fn lease_parts(lease: &[u8]) -> (&[u8], bool) {
    match lease.strip_suffix(WAITED) {
        Some(holder) => (holder, true),
        None => (lease, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_passes_the_conformance_suite() {
        crate::store::conformance::run(MemoryStore::default).await;
    }

    #[tokio::test]
    async fn a_lagging_subscriber_sees_a_gap() {
        let s = MemoryStore::default();
        let mut sub = s.subscribe("ch").await.unwrap();
        for i in 0..CHANNEL_CAPACITY + 5 {
            s.publish("ch", Bytes::from(i.to_string())).await.unwrap();
        }
        assert_eq!(sub.next().await, Some(crate::store::Event::Gap));
    }
}
