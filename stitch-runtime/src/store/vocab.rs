//! The store vocabulary: the verbs whose meaning stitch defines, and the values they take and
//! return. Every driver implements the same meaning, so the fleet protocols built on them (one
//! throttle budget, leases, shared circuits) behave the same on [`MemoryStore`](super::MemoryStore),
//! Redis or a third-party store; [`conformance::run`](super::conformance::run) checks it.
//!
//! Times are integer microseconds on the **store's** clock ([`Store::time`](super::Store::time)),
//! never a caller's: clock skew between processes cannot move a grant or an expiry.

use bytes::Bytes;
use std::fmt;
use tokio::sync::{broadcast, mpsc};

/// One verb of the store vocabulary. [`Store::capabilities`](super::Store::capabilities) returns
/// the set a driver implements; [`Store::require`](super::Store::require) turns a missing one into
/// an error naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verb {
    /// `get`: read a value.
    Get,
    /// `set`: write a value with expiry.
    Set,
    /// `delete`: remove a key.
    Delete,
    /// `increment`: atomic add with expiry set when the counter is created.
    Increment,
    /// `set_if_absent`: write only when the key is absent.
    SetIfAbsent,
    /// `compare_and_set`: write only when the current value is the expected one.
    CompareAndSet,
    /// `reserve`: a GCRA reservation on the store's clock.
    Reserve,
    /// `lease_acquire` / `lease_renew` / `lease_release`: expiring holders under a limit.
    Lease,
    /// `lease_reserve`: a lease and a GCRA reservation of one budget in one atomic step.
    LeaseReserve,
    /// `publish`: send an event on a channel.
    Publish,
    /// `subscribe`: receive a channel's events, with gaps reported.
    Subscribe,
    /// `time`: the store's clock.
    Time,
    /// `circuit`: one atomic step of a fleet-wide circuit breaker.
    Circuit,
    /// `fill_claim` / `fill_renew` / `fill_complete` / `fill_abandon` / `fill_invalidate`: one
    /// fenced fill of a value for the whole fleet (cache entries, sessions, tokens).
    Fill,
    /// `bump`: increment a generation and announce it in one atomic step.
    Bump,
    /// `fill_invalidate_if`: `fill_invalidate` only while the value is still the one the caller
    /// saw.
    FillInvalidateIf,
}

impl Verb {
    /// Every verb, in declaration order.
    pub const ALL: [Verb; 16] = [
        Verb::Get,
        Verb::Set,
        Verb::Delete,
        Verb::Increment,
        Verb::SetIfAbsent,
        Verb::CompareAndSet,
        Verb::Reserve,
        Verb::Lease,
        Verb::LeaseReserve,
        Verb::Publish,
        Verb::Subscribe,
        Verb::Time,
        Verb::Circuit,
        Verb::Fill,
        Verb::Bump,
        Verb::FillInvalidateIf,
    ];

    /// The method name, as written in messages.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Set => "set",
            Verb::Delete => "delete",
            Verb::Increment => "increment",
            Verb::SetIfAbsent => "set_if_absent",
            Verb::CompareAndSet => "compare_and_set",
            Verb::Reserve => "reserve",
            Verb::Lease => "lease",
            Verb::LeaseReserve => "lease_reserve",
            Verb::Publish => "publish",
            Verb::Subscribe => "subscribe",
            Verb::Time => "time",
            Verb::Circuit => "circuit",
            Verb::Fill => "fill",
            Verb::Bump => "bump",
            Verb::FillInvalidateIf => "fill_invalidate_if",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Verb`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Verbs(u16);

impl Verbs {
    /// What every store has: `get`, `set`, `delete`.
    pub const BASIC: Verbs =
        Verbs((1 << Verb::Get as u16) | (1 << Verb::Set as u16) | (1 << Verb::Delete as u16));

    /// Every verb.
    pub fn all() -> Verbs {
        Verbs::of(&Verb::ALL)
    }

    /// The set holding `verbs`.
    pub fn of(verbs: &[Verb]) -> Verbs {
        Verbs(verbs.iter().fold(0, |acc, v| acc | v.bit()))
    }

    /// Whether `verb` is in the set.
    pub fn contains(self, verb: Verb) -> bool {
        self.0 & verb.bit() != 0
    }

    /// Whether every verb of `verbs` is in the set.
    pub fn contains_all(self, verbs: &[Verb]) -> bool {
        verbs.iter().all(|v| self.contains(*v))
    }

    /// The set with `verb` added.
    pub fn with(self, verb: Verb) -> Verbs {
        Verbs(self.0 | verb.bit())
    }

    /// The verbs in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Verb> {
        Verb::ALL.into_iter().filter(move |v| self.contains(*v))
    }
}

impl fmt::Debug for Verbs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A caller-generated id making a mutating verb idempotent: a command whose outcome is unknown
/// (it timed out, or the connection dropped while it was in flight) is retried with the same id,
/// and the store applies it at most once, answering the retry with the first outcome. The store
/// remembers an id for [`RETRY_WINDOW`] after its effect.
///
/// For leases, the id is the holder's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(u128);

/// How long a store remembers an [`OpId`] after the operation took effect (a retry must come
/// within it; stitch retries once, within one store timeout).
pub const RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

impl OpId {
    /// A fresh id, unique across the fleet: a random 64-bit prefix drawn once per process from the
    /// OS generator, and a per-process counter. One OS read per id cost the Redis driver a quarter
    /// of its acquire throughput (BENCHMARKS.md, "Fleet throttle on Redis"); two processes share a
    /// prefix with probability about n²/2⁶⁵ for n processes.
    pub fn random() -> OpId {
        use std::sync::atomic::{AtomicU64, Ordering};
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let prefix = *PREFIX.get_or_init(|| {
            let mut b = [0u8; 8];
            // The OS generator only fails on platforms stitch does not build for; the time and
            // the process id still give distinct prefixes then.
            if getrandom::fill(&mut b).is_err() {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                b = (t ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
            }
            u64::from_le_bytes(b)
        });
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        OpId((u128::from(prefix) << 64) | u128::from(n))
    }

    /// An id from its 128 bits (for tests and for drivers reading one back).
    pub const fn from_u128(v: u128) -> OpId {
        OpId(v)
    }

    /// The id's 128 bits.
    pub const fn as_u128(self) -> u128 {
        self.0
    }
}

/// 32 lowercase hex digits: the form stored in keys and lease sets.
impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({self})")
    }
}

/// The outcome of [`Store::compare_and_set`](super::Store::compare_and_set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// The value was the expected one and is now the new one.
    Swapped,
    /// The value was not the expected one; nothing was written. `current` is what was there
    /// (`None`: absent).
    Conflict {
        /// The value found.
        current: Option<Bytes>,
    },
}

/// A GCRA reservation request (see [`Store::reserve`](super::Store::reserve)). Same semantics as
/// the in-process pacer: a caller arriving at store time `now` is granted at
/// `max(now, tat - tolerance)` and moves the theoretical arrival time to
/// `max(tat, grant) + interval`. So in any window of length `T` at most
/// `burst + ⌈T / interval⌉` grants fall, where `tolerance = burst × interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// The emission interval in microseconds (`1 / rate`); at least 1.
    pub interval_us: u64,
    /// The burst tolerance in microseconds (`burst × interval_us`).
    pub tolerance_us: u64,
    /// Refuse (reserving nothing) when the grant would be further than this in the future;
    /// `None` always reserves.
    pub max_wait_us: Option<u64>,
    /// The reservation's id: a retried reservation is answered with the same grant.
    pub id: OpId,
}

/// What a reservation decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send now. `at` is the slot's store time (microseconds, at most `store_time`; earlier
    /// only when a retried reservation's slot has already come).
    Granted {
        /// The slot's store time.
        at: u64,
    },
    /// Reserved: send at this store time (microseconds).
    WaitUntil(u64),
    /// Not reserved: the grant would have been `wait_us` from now, beyond the maximum wait.
    Refused {
        /// How far in the future the grant would have been.
        wait_us: u64,
    },
}

/// The answer of [`Store::reserve`](super::Store::reserve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// What was decided.
    pub decision: Decision,
    /// The store's time when it decided (microseconds), to convert `WaitUntil` into a local delay.
    pub store_time: u64,
}

/// A lease request (see [`Store::lease_acquire`](super::Store::lease_acquire)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRequest {
    /// At most this many unexpired holders at once.
    pub limit: u32,
    /// The lease's lifetime in microseconds from the store's now; a holder renews before it ends.
    pub ttl_us: u64,
    /// The holder: acquiring again with the same id refreshes its lease instead of taking a
    /// second slot (so a retried acquire is idempotent).
    pub holder: OpId,
}

/// What a lease acquisition decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Held until this store time (microseconds).
    Acquired {
        /// The lease's expiry on the store's clock.
        expires_at: u64,
    },
    /// All slots are held; the earliest one expires at this store time (a waiter re-checks no
    /// later than that, even without a release event).
    Full {
        /// The earliest holder's expiry on the store's clock.
        next_expiry: u64,
    },
}

/// The answer of [`Store::lease_acquire`](super::Store::lease_acquire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    /// What was decided.
    pub decision: LeaseDecision,
    /// The store's time when it decided (microseconds).
    pub store_time: u64,
}

/// What [`Store::lease_reserve`](super::Store::lease_reserve) decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The lease is held until `expires_at` and the pacing slot at `at` is reserved: send at
    /// `at` (now when `at <= store_time`; earlier than the store time only for a retried request
    /// whose slot has already come).
    Admitted {
        /// The lease's expiry on the store's clock.
        expires_at: u64,
        /// The reserved slot's store time.
        at: u64,
    },
    /// Every lease slot is held: nothing was taken or reserved. The earliest holder's expiry (a
    /// waiter asks again no later than that, even without a release event).
    Full {
        /// The earliest holder's expiry on the store's clock.
        next_expiry: u64,
    },
    /// A lease slot was free, but the pacing slot would have been `wait_us` from now, beyond
    /// the reservation's maximum wait: nothing was taken or reserved.
    Refused {
        /// How far in the future the slot would have been.
        wait_us: u64,
    },
}

/// The answer of [`Store::lease_reserve`](super::Store::lease_reserve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseReservation {
    /// What was decided.
    pub decision: Admission,
    /// The store's time when it decided (microseconds), to convert the slot into a local delay.
    pub store_time: u64,
}

/// One item of a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A published message.
    Message(Bytes),
    /// Messages may have been lost here (the subscriber lagged, or its connection dropped and was
    /// re-established): state derived from events must be re-read from the store.
    Gap,
}

/// A stream of a channel's [`Event`]s, returned by [`Store::subscribe`](super::Store::subscribe).
/// Every message published after `subscribe` returned is delivered, in order, or a
/// [`Event::Gap`] stands in its place.
pub struct Subscription {
    inner: Inner,
}

enum Inner {
    Broadcast(broadcast::Receiver<Bytes>),
    Channel(mpsc::Receiver<Event>),
    Stream(std::pin::Pin<Box<dyn futures_core::Stream<Item = Event> + Send>>),
}

impl Subscription {
    /// A subscription fed by a driver's task: it sends [`Event`]s and stops when the receiver is
    /// dropped (a send fails).
    pub fn from_receiver(rx: mpsc::Receiver<Event>) -> Subscription {
        Subscription {
            inner: Inner::Channel(rx),
        }
    }

    /// A subscription read straight from a driver's stream, polled by the subscriber's task
    /// (no forwarding task in between); it ends when the stream does.
    pub fn from_stream(
        events: impl futures_core::Stream<Item = Event> + Send + 'static,
    ) -> Subscription {
        Subscription {
            inner: Inner::Stream(Box::pin(events)),
        }
    }

    pub(crate) fn from_broadcast(rx: broadcast::Receiver<Bytes>) -> Subscription {
        Subscription {
            inner: Inner::Broadcast(rx),
        }
    }

    /// The next event; `None` when the subscription has ended for good.
    pub async fn next(&mut self) -> Option<Event> {
        match &mut self.inner {
            Inner::Broadcast(rx) => match rx.recv().await {
                Ok(m) => Some(Event::Message(m)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some(Event::Gap),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            Inner::Channel(rx) => rx.recv().await,
            Inner::Stream(events) => std::future::poll_fn(|cx| events.as_mut().poll_next(cx)).await,
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// What one call tells a fleet circuit (see [`Store::circuit`](super::Store::circuit)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitEvent {
    /// May the call go? Closed: yes. Open: no, until the cooldown has passed; then the first
    /// caller becomes the single half-open trial (fleet-wide) and the others are refused until
    /// it reports or its trial lease ends.
    Admit,
    /// The call succeeded: the circuit closes (failure count 0) for everyone.
    Success,
    /// The call failed: one more consecutive failure; at `failures` (or when the failing call
    /// was the trial) the circuit opens for `cooldown`. Idempotent by the step's id.
    Failure,
    /// The trial was dropped without an outcome: if the caller still holds the trial, the next
    /// caller may take it at once.
    Abandon,
}

/// One step of a fleet circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitStep {
    /// What happened.
    pub event: CircuitEvent,
    /// Consecutive failures that open the circuit (at least 1).
    pub failures: u32,
    /// How long it stays open (microseconds of store time).
    pub cooldown_us: u64,
    /// How long a half-open trial may run before another caller may take it over (a trial whose
    /// process died must not keep the circuit half-open forever).
    pub trial_ttl_us: u64,
    /// The call: the same id for its `Admit` and its report. It names the trial's holder and makes
    /// a retried `Failure` count once.
    pub id: OpId,
}

/// A circuit's phase, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitPhase {
    /// Calls go.
    Closed,
    /// Calls fail fast.
    Open,
    /// One trial call is (or may be) in flight.
    HalfOpen,
}

/// What a circuit step decided, for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Closed, with this many consecutive failures counted.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Open for this much longer (microseconds).
    Open {
        /// Until the cooldown ends.
        retry_in_us: u64,
    },
    /// Half-open, and the caller (the step's id) holds the single trial.
    Trial,
    /// Half-open, and another caller holds the trial for at most this much longer.
    Busy {
        /// Until the other trial's lease ends.
        retry_in_us: u64,
    },
}

/// The answer of [`Store::circuit`](super::Store::circuit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitReply {
    /// The phase before the step.
    pub before: CircuitPhase,
    /// The state after it.
    pub state: CircuitState,
}

/// The circuit state machine every driver implements, on a state encoded as `c:<failures>`,
/// `o:<open until µs>` or `h:<trial until µs>:<holder>` (absent: `c:0`). Returns the value to
/// write (`Some(None)`: delete) and the reply. `MemoryStore` runs it under its write lock; the
/// Redis driver runs the same steps in one Lua script (keep the two in step).
pub(crate) fn circuit_step(
    current: Option<&[u8]>,
    step: &CircuitStep,
    now: u64,
) -> (Option<Option<String>>, CircuitReply) {
    let text = current
        .and_then(|c| std::str::from_utf8(c).ok())
        .unwrap_or("c:0");
    let mut parts = text.splitn(3, ':');
    let (kind, n, holder) = (
        parts.next().unwrap_or("c"),
        parts
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0),
        parts.next().unwrap_or(""),
    );
    let id = step.id.to_string();
    let before = match kind {
        "o" => CircuitPhase::Open,
        "h" => CircuitPhase::HalfOpen,
        _ => CircuitPhase::Closed,
    };
    let reply = |state| CircuitReply { before, state };
    let open_until = now.saturating_add(step.cooldown_us);
    let open = || {
        (
            Some(Some(format!("o:{open_until}"))),
            reply(CircuitState::Open {
                retry_in_us: step.cooldown_us,
            }),
        )
    };
    let trial = || {
        let until = now.saturating_add(step.trial_ttl_us);
        (
            Some(Some(format!("h:{until}:{id}"))),
            reply(CircuitState::Trial),
        )
    };
    match (step.event, before) {
        (CircuitEvent::Admit, CircuitPhase::Closed) => (
            None,
            reply(CircuitState::Closed {
                failures: n.min(u64::from(u32::MAX)) as u32,
            }),
        ),
        (CircuitEvent::Admit, CircuitPhase::Open) if now < n => (
            None,
            reply(CircuitState::Open {
                retry_in_us: n - now,
            }),
        ),
        (CircuitEvent::Admit, CircuitPhase::HalfOpen) if holder == id => {
            (None, reply(CircuitState::Trial))
        }
        (CircuitEvent::Admit, CircuitPhase::HalfOpen) if now < n => (
            None,
            reply(CircuitState::Busy {
                retry_in_us: n - now,
            }),
        ),
        (CircuitEvent::Admit, _) => trial(),
        (CircuitEvent::Success, _) => (
            (text != "c:0").then_some(None),
            reply(CircuitState::Closed { failures: 0 }),
        ),
        (CircuitEvent::Failure, CircuitPhase::Closed) if n + 1 < u64::from(step.failures) => (
            Some(Some(format!("c:{}", n + 1))),
            reply(CircuitState::Closed {
                failures: (n + 1) as u32,
            }),
        ),
        (CircuitEvent::Failure, _) => open(),
        (CircuitEvent::Abandon, CircuitPhase::HalfOpen) if holder == id => (
            Some(Some(format!("o:{now}"))),
            reply(CircuitState::Open { retry_in_us: 0 }),
        ),
        (CircuitEvent::Abandon, _) => (None, reply(CircuitState::Closed { failures: 0 })),
    }
}

/// How long a circuit's state outlives its last step: long enough that an open circuit never
/// expires into a closed one, short enough that an abandoned one does not stay forever.
pub(crate) fn circuit_ttl(step: &CircuitStep) -> std::time::Duration {
    std::time::Duration::from_micros(
        step.cooldown_us
            .saturating_add(step.trial_ttl_us)
            .saturating_add(3_600_000_000),
    )
}

/// The keys of one fleet-filled value (a cache entry, a session, a token): the value, its fill
/// lease and its generation. A networked driver touches all three in one atomic step, so they
/// must share a hash slot; [`keys::FillKeySet`](super::keys::FillKeySet) makes them so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillKeys<'a> {
    /// The value.
    pub value: &'a str,
    /// The fill lease: who is fetching the value for the fleet, until when.
    pub lease: &'a str,
    /// The generation (absent: 0), moved by every invalidation so a fill that started before one
    /// cannot store what it fetched.
    pub generation: &'a str,
}

/// A claim on a fleet-filled value (see [`Store::fill_claim`](super::Store::fill_claim)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillClaim {
    /// Who would fill: claiming again with the same id while holding the lease refreshes it
    /// (a retried claim is idempotent).
    pub holder: OpId,
    /// The lease's lifetime in microseconds from the store's now; the holder renews it (every
    /// third of it) while its fetch runs.
    pub lease_ttl_us: u64,
}

/// What a fill claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The value is there.
    Hit {
        /// The stored bytes.
        value: Bytes,
        /// How much longer the value lives (microseconds; at least 1).
        ttl_us: u64,
    },
    /// The caller holds the fill lease: it fetches and then calls
    /// [`Store::fill_complete`](super::Store::fill_complete) with this generation.
    Leader {
        /// The generation the fill is fenced with.
        generation: u64,
    },
    /// Another holder is filling; wait for its notification, and claim again no later than when
    /// its lease ends (so a lost message or a dead holder only delays).
    Busy {
        /// Until the current holder's lease ends (microseconds; at least 1).
        lease_ends_in_us: u64,
    },
}

/// How long a fill generation is kept after an invalidation moved it (and at least as long as a
/// lease fenced by it lives): long enough that no fill in flight sees it fall back to 0, short
/// enough that invalidated entries do not leave a key behind for ever.
pub(crate) const FILL_GENERATION_KEEP: std::time::Duration = std::time::Duration::from_secs(3600);

/// A notification published in the same atomic step as a write: waiters and other processes'
/// in-process tiers learn of it without polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify<'a> {
    /// The channel (see [`Store::subscribe`](super::Store::subscribe)). Not a key: a cluster
    /// driver publishes it to every node.
    pub channel: &'a str,
    /// The message.
    pub message: Bytes,
}

/// A fenced completion of a fill (see [`Store::fill_complete`](super::Store::fill_complete)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill<'a> {
    /// The lease holder, as in its claim; also the completion's idempotency id.
    pub holder: OpId,
    /// The generation its [`Claimed::Leader`] returned.
    pub generation: u64,
    /// The bytes to store.
    pub value: Bytes,
    /// How long the value lives.
    pub ttl: std::time::Duration,
    /// Published whether the value was stored or not (waiters claim again either way), unless
    /// `value_message` replaces it.
    pub notify: Option<Notify<'a>>,
    /// When the value was stored (and `notify` is set) and another claimant found this lease
    /// busy, the message published on `notify`'s channel instead of `notify`'s own: these bytes
    /// followed by the stored value, so waiters take the value from the notification without
    /// claiming again. Only the store knows whether its write happened and whether anyone waits,
    /// so it picks the message in the same atomic step: a value carried by a message is always
    /// one that was stored, and a fill nobody waited for does not send its value to every
    /// subscriber. `None`: `notify`'s message either way.
    pub value_message: Option<Bytes>,
}
