//! The store seam: where state shared beyond one process lives. A runtime always has its
//! in-process tier; attaching a [`Store`] with `Runtime::builder().store(...)` adds a shared tier
//! that every runtime pointed at the same store reads and writes (cache entries today; throttle
//! budgets, in-flight leases and sessions use the same seam).
//!
//! Invariant: a store failure never fails a call. Reads that fail are misses, writes that fail are
//! skipped, both logged with `tracing::warn!`.

pub(crate) mod breaker;
pub mod conformance;
#[cfg(feature = "redis")]
mod deadline;
mod error;
pub mod keys;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod vocab;

pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use vocab::{Admission, LeaseReservation};
pub use vocab::{
    Cas, CircuitEvent, CircuitPhase, CircuitReply, CircuitState, CircuitStep, Claimed, Decision,
    Event, Fill, FillClaim, FillKeys, Gcra, LeaseDecision, LeaseGrant, LeaseRequest, Notify, OpId,
    Reservation, Subscription, Verb, Verbs, RETRY_WINDOW,
};

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future returned by [`Store`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Shared key-value storage with expiry. Keys are ASCII; values are opaque bytes.
///
/// Implementations must be safe to call concurrently from many tasks and processes. Attach one
/// with [`RuntimeBuilder::store`](crate::RuntimeBuilder::store); runtimes attached to the same
/// store share cache entries (principal-scoped ones only under the same `principal_key`):
///
/// ```
/// # fn main() -> stitch::Result<()> {
/// let store = stitch::store::MemoryStore::new(10_000); // clones share the data
/// let key = [7; 32]; // a secret, the same in every runtime that should share entries
/// let a = stitch::Runtime::builder().store(store.clone()).principal_key(key).build()?;
/// let b = stitch::Runtime::builder().store(store).principal_key(key).build()?;
/// # let _ = (a, b);
/// # Ok(()) }
/// ```
pub trait Store: Send + Sync + 'static {
    /// The value under `key`, or `None` when absent or expired.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;
    /// Stores `value` under `key` for `ttl`, replacing any previous value.
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()>;
    /// Removes `key`; returns whether it existed.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool>;

    // The fleet vocabulary (see `vocab`). Each verb is atomic; a driver that lacks one leaves the
    // default, which fails with `StoreErrorKind::Unsupported`, and leaves it out of
    // `capabilities`, so a runtime needing it fails when built, never by silently undercounting.

    /// The verbs this driver implements.
    fn capabilities(&self) -> Verbs {
        Verbs::BASIC
    }

    /// The bound this driver puts on each of its operations itself (past it the operation fails
    /// with [`StoreErrorKind::Timeout`]), if it has one. Where the runtime's store timeout is at
    /// least this, fleet throttles rely on it instead of arming a timer of their own around each
    /// operation: a second timer that could never fire first, on the path of every acquire.
    fn operation_timeout(&self) -> Option<Duration> {
        None
    }

    /// Fails, naming the missing verbs and the fix, unless every verb of `verbs` is implemented.
    fn require(&self, verbs: &[Verb]) -> Result<(), StoreError> {
        error::require(self.capabilities(), verbs)
    }

    /// The store's clock, in integer microseconds (only differences are meaningful).
    fn time(&self) -> StoreFuture<'_, u64> {
        unsupported(Verb::Time)
    }

    /// Adds `by` to the integer under `key` (absent: 0) and returns the new value. The expiry
    /// `ttl` is set when the counter is created and not moved by later increments (a fixed
    /// window). Idempotent by `op`.
    fn increment<'a>(
        &'a self,
        key: &'a str,
        by: i64,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, i64> {
        let _ = (key, by, ttl, op);
        unsupported(Verb::Increment)
    }

    /// Stores `value` under `key` for `ttl` only when `key` is absent; returns whether it did.
    /// Idempotent by `op` (a retry of the call that wrote answers `true`).
    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, bool> {
        let _ = (key, value, ttl, op);
        unsupported(Verb::SetIfAbsent)
    }

    /// Replaces the value under `key` with `new` (for `ttl`) when it is exactly `expected`
    /// (`None`: the key is absent). Idempotent by `op` (a retry of the winning call answers
    /// [`Cas::Swapped`]).
    fn compare_and_set<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Bytes,
        ttl: Duration,
        op: OpId,
    ) -> StoreFuture<'a, Cas> {
        let _ = (key, expected, new, ttl, op);
        unsupported(Verb::CompareAndSet)
    }

    /// A GCRA reservation on the budget whose theoretical arrival time is kept under `key`,
    /// decided on the store's clock (see [`Gcra`]). Idempotent by `gcra.id`.
    fn reserve<'a>(&'a self, key: &'a str, gcra: Gcra) -> StoreFuture<'a, Reservation> {
        let _ = (key, gcra);
        unsupported(Verb::Reserve)
    }

    /// Takes a lease in the holder set under `key`: expired holders are swept first, then the
    /// holder is added if fewer than `limit` remain (or refreshed if already there).
    fn lease_acquire<'a>(
        &'a self,
        key: &'a str,
        lease: LeaseRequest,
    ) -> StoreFuture<'a, LeaseGrant> {
        let _ = (key, lease);
        unsupported(Verb::Lease)
    }

    /// Extends `holder`'s lease to `ttl_us` from the store's now; `false` when it is no longer
    /// held (expired or released: the holder must stop acting on it).
    fn lease_renew<'a>(&'a self, key: &'a str, holder: OpId, ttl_us: u64) -> StoreFuture<'a, bool> {
        let _ = (key, holder, ttl_us);
        unsupported(Verb::Lease)
    }

    /// Gives `holder`'s lease back; returns whether it was held (unexpired). When it was and
    /// `notify` is given, `key` is published on that channel in the same atomic step (to wake
    /// waiters). Retrying a release whose outcome is unknown is safe; the retry answers `false`.
    fn lease_release<'a>(
        &'a self,
        key: &'a str,
        holder: OpId,
        notify: Option<&'a str>,
    ) -> StoreFuture<'a, bool> {
        let _ = (key, holder, notify);
        unsupported(Verb::Lease)
    }

    /// A lease and a pacing reservation of one budget in one atomic step: one round trip where
    /// [`lease_acquire`](Store::lease_acquire) then [`reserve`](Store::reserve) take two.
    /// Expired holders under `leases` are swept; when `lease.limit` unexpired holders remain and
    /// `lease.holder` is not one of them, nothing is taken or reserved ([`Admission::Full`]).
    /// Otherwise the GCRA reservation `gcra` is decided on the state under `tat` exactly as
    /// [`reserve`](Store::reserve) decides it; when it is refused (beyond `gcra.max_wait_us`)
    /// nothing is taken either ([`Admission::Refused`]), and when it is not, the lease is taken
    /// (or refreshed) together with the slot ([`Admission::Admitted`]).
    ///
    /// The holder then waits for its slot holding its lease, as with the two verbs in that order;
    /// when every user of the budget takes its slots through this verb, each slot ahead belongs
    /// to a current holder, so the wait is at most about `limit` intervals. Idempotent by
    /// `gcra.id` (a retry is answered with the first slot and reserves no second one) and by
    /// `lease.holder` (a retry refreshes the lease). `leases` and `tat` must share a cluster
    /// hash slot ([`KeyLayout::budget_leases`](keys::KeyLayout::budget_leases) and
    /// [`budget_tat`](keys::KeyLayout::budget_tat) do).
    fn lease_reserve<'a>(
        &'a self,
        leases: &'a str,
        tat: &'a str,
        lease: LeaseRequest,
        gcra: Gcra,
    ) -> StoreFuture<'a, LeaseReservation> {
        let _ = (leases, tat, lease, gcra);
        unsupported(Verb::LeaseReserve)
    }

    /// One atomic step of the fleet circuit whose state is under `key`, on the store's clock:
    /// failure count, open state and the single half-open trial are one value, so every runtime
    /// on the store sees one circuit (see [`CircuitEvent`] for the state machine). A retried
    /// `Failure` with the same id counts once.
    fn circuit<'a>(&'a self, key: &'a str, step: CircuitStep) -> StoreFuture<'a, CircuitReply> {
        let _ = (key, step);
        unsupported(Verb::Circuit)
    }

    /// Fleet fill, step 1, in one atomic step: the value when present ([`Claimed::Hit`]);
    /// otherwise the fill lease for `claim.holder` when it is free or already theirs
    /// ([`Claimed::Leader`], with the generation to fence the fill with); otherwise
    /// [`Claimed::Busy`] with the current holder's remaining lease. One round trip on a hit.
    fn fill_claim<'a>(&'a self, keys: FillKeys<'a>, claim: FillClaim) -> StoreFuture<'a, Claimed> {
        let _ = (keys, claim);
        unsupported(Verb::Fill)
    }

    /// Extends `holder`'s fill lease to `ttl_us` from the store's now; `false` when the lease is
    /// no longer theirs (expired, taken over, or removed by an invalidation): the holder must not
    /// expect its `fill_complete` to store.
    fn fill_renew<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        ttl_us: u64,
    ) -> StoreFuture<'a, bool> {
        let _ = (keys, holder, ttl_us);
        unsupported(Verb::Fill)
    }

    /// Fleet fill, step 2, in one atomic step, fenced: when the lease is still `fill.holder`'s
    /// and the generation is still `fill.generation`, stores the value, frees the lease and
    /// publishes `fill.notify` (with `fill.value_message`, when a claim found the fill busy:
    /// that prefix followed by the value), returning `true`. Otherwise stores nothing, frees the lease only if it is still the
    /// holder's, still publishes `fill.notify`'s own message (waiters claim again at once) and
    /// returns `false`. Idempotent by `fill.holder`: a retry of a completion that stored answers
    /// `true`.
    fn fill_complete<'a>(&'a self, keys: FillKeys<'a>, fill: Fill<'a>) -> StoreFuture<'a, bool> {
        let _ = (keys, fill);
        unsupported(Verb::Fill)
    }

    /// Gives up `holder`'s fill lease without a value (the filler was cancelled or failed without
    /// an outcome to share): frees it if it is still theirs and publishes `notify`, so one waiter
    /// takes over at once instead of when the lease would have ended. Returns whether it was
    /// held.
    fn fill_abandon<'a>(
        &'a self,
        keys: FillKeys<'a>,
        holder: OpId,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        let _ = (keys, holder, notify);
        unsupported(Verb::Fill)
    }

    /// Invalidates a fleet-filled value in one atomic step: deletes the value and the fill lease,
    /// increments the generation (so a fill in flight cannot store what it fetched before) and
    /// publishes `notify`'s message followed by `|` and the generation it moved to, in decimal
    /// (so a subscriber can tell a fill claimed before the invalidation, at an older generation,
    /// from one claimed after it). Returns whether a value was there.
    fn fill_invalidate<'a>(
        &'a self,
        keys: FillKeys<'a>,
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        let _ = (keys, notify);
        unsupported(Verb::Fill)
    }

    /// [`fill_invalidate`](Store::fill_invalidate) only while the value is exactly `expected`
    /// (compare and invalidate, in one atomic step): for a caller that saw `expected` fail, so a
    /// value another process has stored since is kept, and of several callers that saw the same
    /// value fail exactly one invalidates it. When the value differs or is absent, changes nothing
    /// and publishes nothing. Returns whether it invalidated.
    fn fill_invalidate_if<'a>(
        &'a self,
        keys: FillKeys<'a>,
        expected: &'a [u8],
        notify: Option<Notify<'a>>,
    ) -> StoreFuture<'a, bool> {
        let _ = (keys, expected, notify);
        unsupported(Verb::FillInvalidateIf)
    }

    /// Increments the integer under `key` (absent: 0), keeps it for `ttl` from now, and publishes
    /// `notify.message` followed by the new value in decimal ASCII on `notify.channel`, in one
    /// atomic step; returns the new value. Used for fleet-wide generations (bulk invalidation):
    /// a process that holds the generation and listens on the channel never misses a bump
    /// without an [`Event::Gap`].
    fn bump<'a>(&'a self, key: &'a str, ttl: Duration, notify: Notify<'a>) -> StoreFuture<'a, u64> {
        let _ = (key, ttl, notify);
        unsupported(Verb::Bump)
    }

    /// Sends `message` to the current subscribers of `channel` (fire and forget: subscribers
    /// that are not connected miss it and see an [`Event::Gap`]).
    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> StoreFuture<'a, ()> {
        let _ = (channel, message);
        unsupported(Verb::Publish)
    }

    /// The events of `channel` published from now on.
    fn subscribe<'a>(&'a self, channel: &'a str) -> StoreFuture<'a, Subscription> {
        let _ = channel;
        unsupported(Verb::Subscribe)
    }
}

fn unsupported<'a, T: Send + 'a>(verb: Verb) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(Err(StoreError::unsupported(verb))))
}
