//! Fleet throttles: one budget per pool for every runtime attached to the same store.
//!
//! - **Pacing** is the store's GCRA reservation ([`Store::reserve`]) decided on the store's clock:
//!   one round trip per acquire, and the local wait is `grant − store time`, so clock skew between
//!   processes cannot shift a grant. In any window of length `T` at most `burst + 1 + ⌊T /
//!   interval⌋` grants fall, whatever the number of processes.
//! - **Both on one declaration** (`throttle(rate = .., concurrency = ..)`): the lease and the
//!   pacing slot are taken in one store step ([`Store::lease_reserve`], one round trip), and
//!   neither when either is unavailable (a full budget reserves no slot; a slot beyond the
//!   maximum wait takes no lease). The holder then waits for its slot holding its lease, as
//!   with the in-process limiters; every slot ahead of it belongs to a current holder, so that
//!   idle hold is at most about `concurrency` intervals. A driver without the verb takes the
//!   two in two round trips (see [`NEEDED`]). Two declarations (seam and method) are two
//!   budgets on two cluster slots: their leases are taken in level order, the last one
//!   together with its slot, then the remaining slots.
//! - **Concurrency** is a lease per attempt in the budget's holder set ([`Store::lease_acquire`]):
//!   a random holder id, a TTL renewed every TTL/3 while the attempt runs, released when the permit
//!   is dropped (however the attempt ends, cancellation included). A crashed process's leases
//!   expire within the TTL. A waiting instance re-asks when the fleet's event channel says a lease
//!   of that budget was released, and in any case after [`RECHECK`] or at the earliest holder's
//!   expiry: a lost message only delays a waiter, never strands it. Within an instance waiters
//!   queue FIFO and only the head of the queue asks the store.
//! - **Outage**: every store operation is bounded by the runtime's store timeout and retried once
//!   when its outcome is unknown (the holder or reservation id makes that safe). A failure then
//!   follows the builder's [`ThrottleOutage`]: fail the attempt with
//!   [`Error::ThrottleUnavailable`] (default), or pace it with an in-process limiter at a share of
//!   the declared budget. Never unthrottled. After a failure the store is skipped for
//!   [`PROBE_AFTER`] by the runtime's store breaker, shared with the cache and the circuits (so an
//!   outage does not cost every call a store timeout), then asked again: recovery is automatic.
//!
//! - **Opting out**: a declaration written `throttle(..., local)` is enforced by an in-process
//!   limiter of this runtime even though the others are fleet budgets; a stitch with both kinds
//!   takes its local throttles first, then the fleet ones (the fleet's pacing is the last wait, so
//!   what the fleet sends stays spaced by the fleet's grants).
//! - **Shutdown**: [`Fleet::shutdown`] (`Runtime::shutdown`) stops every renewal and releases
//!   every lease this process holds, so their slots come back at once instead of after the TTL;
//!   acquires after it fail with [`Error::ThrottleUnavailable`]. Dropping the runtime's last
//!   handle does the same in a spawned task when a tokio runtime is there to run it (best effort:
//!   a process that exits right after may not run it; a SIGKILLed one never does, and its leases
//!   expire within the TTL).
//! - **Several tokio runtimes**: a lease is released by a task on the tokio runtime of the call
//!   that took it. If that tokio runtime is dropped before the task ran (a stitch runtime shared
//!   by `#[tokio::test]`s, each with its own), the next acquire gives the lease back first.
//!
//! Across processes a budget is identified by name (the descriptor's address means nothing in
//! another process): a stitch's own budget by the stitch's `name`, host pools by `host:port`, seam
//! and named pools by their name. Processes must declare the same rate for the same budget.
//! A pacing reservation cannot be handed back to the store: a caller dropped while waiting for its
//! slot leaves it unused (the fleet sends less, never more).

use super::limiter::{bound, Limiters, PacingClock, Scope, ThrottlePermit};
use super::{Pool, ThrottleSpec};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::fasthash::FastMap;
use crate::meter;
use crate::store::breaker::StoreBreaker;
use crate::store::keys::KeyLayout;
use crate::store::{
    Admission, Decision, Event, Gcra, LeaseDecision, LeaseRequest, OpId, Store, StoreError,
    StoreErrorKind, StoreFuture, Verb,
};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify, Semaphore};
use tokio::time::Instant;

/// The verbs a store must implement for fleet throttles (checked when the runtime is built).
/// [`Verb::LeaseReserve`] is not among them: with a driver that lacks it, a declaration with both
/// a rate and a concurrency cap takes its lease and its slot in two round trips (`lease_acquire`,
/// then `reserve`) with the same outcome, so an older third-party driver keeps working.
pub(crate) const NEEDED: [Verb; 3] = [Verb::Reserve, Verb::Lease, Verb::Subscribe];

/// A waiting instance asks the store again at least this often, even without a release event.
pub(crate) const RECHECK: Duration = Duration::from_millis(250);

/// After a store failure, throttles follow the outage policy without asking the store for this
/// long; the first acquire after it probes the store again.
pub(crate) use crate::store::breaker::PROBE_AFTER;

/// How long a fleet lease lives unless renewed (default of `RuntimeBuilder::throttle_lease_ttl`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// What a fleet throttle does when its store cannot be reached (or does not answer within the
/// store timeout). Chosen with `Runtime::builder().throttle_outage(..)`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum ThrottleOutage {
    /// The attempt fails with [`Error::ThrottleUnavailable`] and nothing is sent (the default:
    /// an outage of the store never lets the fleet exceed its budget).
    #[default]
    Fail,
    /// The attempt is throttled by an in-process limiter enforcing `share` (in `(0, 1]`) of each
    /// declared rate and concurrency (at least one slot); e.g. `1 / fleet size`.
    Local {
        /// The share of each declared budget one process may use alone.
        share: f64,
    },
}

impl ThrottleOutage {
    /// Pace locally at `share` of each declared budget (clamped to `(0, 1]`).
    pub fn local(share: f64) -> Self {
        let share = if share.is_finite() && share > 0.0 {
            share.min(1.0)
        } else {
            // A zero, negative or NaN share would stop every call: the smallest useful one.
            f64::MIN_POSITIVE
        };
        ThrottleOutage::Local { share }
    }
}

/// Settings of the fleet throttles (from the runtime builder).
pub(crate) struct Settings {
    /// The runtime's key layout (its `key_prefix`).
    pub(crate) layout: KeyLayout,
    pub(crate) store_timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) outage: ThrottleOutage,
    pub(crate) clock: PacingClock,
}

/// The fleet throttles of one runtime.
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// Whether the store has [`Verb::LeaseReserve`]: a lease and its pacing slot in one step.
    lease_reserve: bool,
    /// Whether the driver bounds every operation by the store timeout or less itself
    /// ([`Store::operation_timeout`]): then [`Inner::op`] arms no timer of its own.
    bounded_by_driver: bool,
    layout: KeyLayout,
    channel: String,
    store_timeout: Duration,
    lease_ttl: Duration,
    /// The in-process stand-in used during an outage with [`ThrottleOutage::Local`] (for the
    /// fleet declarations only).
    fallback: Option<Limiters>,
    /// The declarations written `local`: enforced in this process whatever the store.
    local: Limiters,
    /// Every lease this process holds, for [`Fleet::shutdown`].
    held: Mutex<FastMap<OpId, Arc<Budget>>>,
    /// Set by [`Fleet::shutdown`] (under `held`'s lock, so no lease is registered after it).
    closed: std::sync::atomic::AtomicBool,
    /// Releases whose task never ran to the end: spawned on a tokio runtime that was dropped
    /// first (one stitch runtime used from several tokio runtimes in turn, as `#[tokio::test]`s
    /// sharing one do). The next acquire, on whatever tokio runtime, gives them back first, so
    /// their slots do not wait out the lease TTL.
    orphans: Mutex<Vec<(OpId, Arc<Budget>)>>,
    /// Whether `orphans` holds any (a load on the acquire path).
    has_orphans: std::sync::atomic::AtomicBool,
    /// Per budget (by its lease key), the instance-local queue and wake-up.
    budgets: RwLock<FastMap<String, Arc<Budget>>>,
    /// The budgets of host-independent pools by descriptor and level: the acquire path finds
    /// them without formatting a name and two keys.
    by_endpoint: RwLock<FastMap<(usize, u8), Arc<Budget>>>,
    /// The event listener, started lazily (it needs a tokio runtime) and again if the tokio
    /// runtime it ran on has gone.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Signalled by [`Fleet::shutdown`] (stops the renewals) and dropped with the runtime (ends
    /// the event listener).
    stop: watch::Sender<()>,
    /// The runtime's store breaker (shared with the cache and the circuits).
    breaker: Arc<StoreBreaker>,
}

struct Budget {
    tat: String,
    leases: String,
    /// One contender per instance, FIFO.
    turn: Semaphore,
    /// A lease of this budget was released somewhere in the fleet.
    released: Notify,
}

/// Fleet leases held by one attempt.
pub(crate) struct Held {
    _leases: [Option<Lease>; 2],
}

/// A held lease: dropping it stops the renewals and releases the lease.
struct Lease {
    _stop: oneshot::Sender<()>,
}

/// Why a store-backed acquire did not succeed.
enum Failure {
    /// The budget refused (wait too long): the caller's error.
    Throttle(Error),
    /// The store failed: the outage policy decides.
    Store(StoreError),
    /// The runtime was shut down while the attempt waited.
    Closed,
}

/// The pacing of one declaration, for its store reservations.
struct Pace<'a> {
    spec: &'a ThrottleSpec,
    interval_us: u64,
    /// The attempt's deadline.
    deadline: Option<Instant>,
}

impl Pace<'_> {
    /// The longest wait for a slot accepted now: the declaration's `max_wait`, or what is left
    /// of the attempt's deadline when less.
    fn limit(&self) -> Option<Duration> {
        bound(
            self.spec.max_wait,
            self.deadline
                .map(|d| d.saturating_duration_since(Instant::now())),
        )
    }

    /// A reservation request with a fresh id.
    fn gcra(&self, limit: Option<Duration>) -> Gcra {
        Gcra {
            interval_us: self.interval_us,
            tolerance_us: self.interval_us.saturating_mul(u64::from(self.spec.burst)),
            max_wait_us: limit.map(|l| l.as_micros() as u64),
            id: OpId::random(),
        }
    }
}

impl Fleet {
    /// Fleet throttles with a breaker of their own (tests; a runtime shares its breaker).
    #[cfg(test)]
    pub(crate) fn new(store: Arc<dyn Store>, settings: Settings) -> Self {
        let breaker = Arc::new(StoreBreaker::new(settings.store_timeout));
        Self::with_breaker(store, breaker, settings)
    }

    pub(crate) fn with_breaker(
        store: Arc<dyn Store>,
        breaker: Arc<StoreBreaker>,
        settings: Settings,
    ) -> Self {
        let layout = settings.layout;
        Fleet {
            inner: Arc::new(Inner {
                lease_reserve: store.capabilities().contains(Verb::LeaseReserve),
                bounded_by_driver: store
                    .operation_timeout()
                    .is_some_and(|t| t <= settings.store_timeout),
                store,
                channel: layout.events(),
                layout,
                store_timeout: settings.store_timeout,
                lease_ttl: settings.lease_ttl.max(Duration::from_millis(30)),
                fallback: match settings.outage {
                    ThrottleOutage::Local { share } => {
                        Some(Limiters::scoped(settings.clock, share, Scope::Fleet))
                    }
                    ThrottleOutage::Fail => None,
                },
                local: Limiters::scoped(settings.clock, 1.0, Scope::Local),
                held: Mutex::default(),
                closed: std::sync::atomic::AtomicBool::new(false),
                orphans: Mutex::default(),
                has_orphans: std::sync::atomic::AtomicBool::new(false),
                budgets: RwLock::default(),
                by_endpoint: RwLock::default(),
                listener: Mutex::new(None),
                stop: watch::channel(()).0,
                breaker,
            }),
        }
    }

    /// Budgets currently known to this instance, and the in-process pools of `local` ones.
    pub(crate) fn len(&self) -> usize {
        self.inner
            .budgets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            + self.inner.local.len()
    }

    /// The limiters of the declarations written `local`, when those are all `endpoint` declares
    /// (its uncontended path then needs no future, as without a store).
    #[inline]
    pub(crate) fn only_local(&self, endpoint: &Endpoint) -> Option<&Limiters> {
        endpoint
            .throttles
            .iter()
            .all(|s| s.local)
            .then_some(&self.inner.local)
    }

    /// Acquires every throttle of `endpoint` for one attempt: the `local` declarations on this
    /// process's limiters, then the fleet budgets (leases first, then pacing, like the in-process
    /// limiters); waits bounded by `max_wait` and `deadline`.
    pub(crate) async fn acquire(
        &self,
        endpoint: &'static Endpoint,
        host: &str,
        deadline: Option<Instant>,
    ) -> crate::Result<ThrottlePermit> {
        let inner = &self.inner;
        if !inner.local.covers(endpoint) {
            return self.acquire_fleet(endpoint, host, deadline).await;
        }
        let mut local = inner.local.acquire(endpoint, host, deadline).await?;
        if endpoint.throttles.iter().all(|s| s.local) {
            return Ok(local);
        }
        // Held while the fleet budgets are acquired: released if that fails or is dropped.
        let fleet = self.acquire_fleet(endpoint, host, deadline).await?;
        local.waited += fleet.waited;
        local._fleet = fleet._fleet;
        Ok(local)
    }

    /// Stops renewing and releases every lease this process holds (each release bounded by the
    /// store timeout, retried once, all at once), so other processes get the slots now rather
    /// than when the leases' TTL ends. Fleet acquires fail from then on.
    pub(crate) async fn shutdown(&self) {
        Inner::shutdown(&self.inner).await;
    }

    async fn acquire_fleet(
        &self,
        endpoint: &'static Endpoint,
        host: &str,
        deadline: Option<Instant>,
    ) -> crate::Result<ThrottlePermit> {
        let inner = &self.inner;
        if inner.is_closed() {
            return Err(closed(endpoint));
        }
        if inner.has_orphans.load(std::sync::atomic::Ordering::Acquire) {
            inner.release_orphans().await;
        }
        let failure = if !inner.may_ask() {
            None
        } else {
            match inner.acquire(endpoint, host, deadline).await {
                Ok(permit) => return Ok(permit),
                Err(Failure::Throttle(e)) => return Err(e),
                Err(Failure::Closed) => return Err(closed(endpoint)),
                Err(Failure::Store(e)) => {
                    inner.mark_down();
                    Some(e)
                }
            }
        };
        let decision = match inner.fallback {
            Some(_) => "throttle_local_share",
            None => "throttle_failed",
        };
        // Every degraded decision is counted: an outage is never silent.
        match &failure {
            Some(e) => meter::store_error(endpoint, e.operation, decision),
            None => meter::degraded(endpoint, decision),
        }
        match (&inner.fallback, failure) {
            (Some(local), failure) => {
                if let Some(e) = &failure {
                    tracing::warn!(stitch = endpoint.name, error = %e, "throttle store unreachable; pacing with the in-process share");
                }
                local.acquire(endpoint, host, deadline).await
            }
            (None, failure) => {
                let source = failure.unwrap_or_else(|| {
                    StoreError::new(
                        "reserve",
                        StoreErrorKind::Unavailable,
                        format!(
                            "the store failed less than {PROBE_AFTER:?} ago and is not asked again yet"
                        ),
                    )
                });
                tracing::warn!(stitch = endpoint.name, error = %source, "throttle store unreachable; the attempt fails");
                Err(Error::ThrottleUnavailable {
                    stitch: endpoint.name,
                    source,
                })
            }
        }
    }
}

impl Drop for Fleet {
    /// The runtime's last handle is gone: leases still registered (an attempt outliving its
    /// runtime, or a release not yet done) are released in a spawned task when a tokio runtime
    /// is there; without one they expire within their TTL. Never blocks.
    fn drop(&mut self) {
        let pending = !self
            .inner
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if pending {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let inner = self.inner.clone();
                handle.spawn(async move { Inner::shutdown(&inner).await });
            }
        }
    }
}

/// The error of a fleet acquire after `Runtime::shutdown`.
fn closed(endpoint: &'static Endpoint) -> Error {
    Error::ThrottleUnavailable {
        stitch: endpoint.name,
        source: StoreError::new(
            "lease_acquire",
            StoreErrorKind::Unavailable,
            "the runtime was shut down (`Runtime::shutdown`): its fleet throttles take no new leases",
        ),
    }
}

impl Inner {
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn shutdown(this: &Arc<Inner>) {
        let leases: Vec<(OpId, Arc<Budget>)> = {
            let mut held = this.held.lock().unwrap_or_else(|e| e.into_inner());
            this.closed
                .store(true, std::sync::atomic::Ordering::Release);
            held.drain().collect()
        };
        // Renewals stop (a renewal racing a release finds the holder gone and adds nothing
        // back); waiters wake, see the runtime closed and leave.
        this.stop.send_replace(());
        this.wake_all();
        let mut releases = tokio::task::JoinSet::new();
        for (holder, budget) in leases {
            let inner = this.clone();
            releases.spawn(async move { inner.release(&budget, holder).await });
        }
        // Each release is bounded by the store timeout and retried once; the bound is a guard.
        let all = async { while releases.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(this.store_timeout * 2 + Duration::from_millis(50), all).await;
    }

    /// Whether this acquire may ask the store: see [`StoreBreaker::may_ask`] (while the store is
    /// down, no; then exactly one probe).
    fn may_ask(&self) -> bool {
        self.breaker.may_ask()
    }

    /// The store answered: acquires ask it again (a load only, on the hot path).
    fn mark_up(&self) {
        self.breaker.succeeded();
    }

    fn mark_down(&self) {
        self.breaker.failed();
    }

    /// The budget of `spec` at `level` of `endpoint`, by its fleet-wide name.
    fn budget(
        &self,
        endpoint: &Endpoint,
        level: usize,
        spec: &ThrottleSpec,
        host: &str,
    ) -> Arc<Budget> {
        // A host pool's budget depends on the call's host; every other one on the declaration.
        let remembered = (spec.pool != Pool::Host).then(|| (endpoint.id(), level as u8));
        if let Some(at) = remembered {
            let known = self.by_endpoint.read().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = known.get(&at) {
                return b.clone();
            }
        }
        let budget = self.budget_by_name(endpoint, level, spec, host);
        if let Some(at) = remembered {
            self.by_endpoint
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(at, budget.clone());
        }
        budget
    }

    fn budget_by_name(
        &self,
        endpoint: &Endpoint,
        level: usize,
        spec: &ThrottleSpec,
        host: &str,
    ) -> Arc<Budget> {
        let name = match spec.pool {
            Pool::Stitch => format!("stitch:{}#{level}", endpoint.name),
            Pool::Host => format!("host:{host}"),
            Pool::Seam(name) => format!("seam:{name}"),
            Pool::Named(name) => format!("pool:{name}"),
        };
        let leases = self.layout.budget_leases(&name);
        if let Some(b) = self
            .budgets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&leases)
        {
            return b.clone();
        }
        let mut budgets = self.budgets.write().unwrap_or_else(|e| e.into_inner());
        if budgets.len() >= 256 {
            // Many hosts must not grow memory without bound: a budget nobody holds keeps nothing
            // (its state is in the store).
            budgets.retain(|_, b| Arc::strong_count(b) > 1);
        }
        budgets
            .entry(leases.clone())
            .or_insert_with(|| {
                Arc::new(Budget {
                    tat: self.layout.budget_tat(&name),
                    leases,
                    turn: Semaphore::new(1),
                    released: Notify::new(),
                })
            })
            .clone()
    }

    /// One store operation, bounded by the store timeout (by the driver's own bound when that is
    /// no longer: one timer per operation, not two); retried once when its outcome is unknown (a
    /// timeout or a dropped connection), which the operation's id makes safe.
    async fn op<'a, T>(
        &'a self,
        name: &'static str,
        f: impl Fn() -> StoreFuture<'a, T>,
    ) -> Result<T, Failure> {
        let mut last = None;
        for _ in 0..2 {
            let answer = if self.bounded_by_driver {
                Ok(f().await)
            } else {
                tokio::time::timeout(self.store_timeout, f()).await
            };
            let e = match answer {
                Ok(Ok(v)) => {
                    // The store answers: other acquires may ask it again at once (a probe that
                    // then waits for its pacing slot must not keep them on the outage policy).
                    self.mark_up();
                    return Ok(v);
                }
                Ok(Err(e)) => e,
                Err(_) => StoreError::timeout(name, self.store_timeout),
            };
            let unknown = matches!(
                e.kind(),
                StoreErrorKind::Timeout | StoreErrorKind::Unavailable
            );
            last = Some(e);
            if !unknown {
                break;
            }
        }
        Err(Failure::Store(last.unwrap_or_else(|| {
            StoreError::timeout(name, self.store_timeout)
        })))
    }

    async fn acquire(
        self: &Arc<Self>,
        endpoint: &'static Endpoint,
        host: &str,
        deadline: Option<Instant>,
    ) -> Result<ThrottlePermit, Failure> {
        let started = Instant::now();
        let specs = &endpoint.throttles[..endpoint.throttles.len().min(2)];
        let limit = |spec: &ThrottleSpec| {
            bound(
                spec.max_wait,
                deadline.map(|d| d.saturating_duration_since(Instant::now())),
            )
        };
        // The last level with a fleet concurrency cap takes its lease and, when the same
        // declaration also paces, its pacing slot in one store step: leases are still taken in
        // level order and every pacing slot after every lease (so the fleet's sends stay spaced
        // by its grants), in one round trip for the usual single declaration.
        let last_capped = specs
            .iter()
            .rposition(|s| s.concurrency.is_some() && !s.local);
        let mut leases: [Option<Lease>; 2] = [None, None];
        let mut paced = [false; 2];
        let mut wait = Duration::ZERO;
        for (level, spec) in specs.iter().enumerate() {
            let Some(n) = spec.concurrency.filter(|_| !spec.local) else {
                continue;
            };
            let budget = self.budget(endpoint, level, spec, host);
            let pace = spec
                .rate
                .filter(|_| self.lease_reserve && Some(level) == last_capped)
                .map(|rate| Pace {
                    spec,
                    interval_us: (rate.interval().as_micros() as u64).max(1),
                    deadline,
                });
            paced[level] = pace.is_some();
            let (lease, slot) = self.lease(endpoint, &budget, n, limit(spec), pace).await?;
            leases[level] = Some(lease);
            wait = wait.max(slot);
        }
        for (level, spec) in specs.iter().enumerate() {
            let Some(rate) = spec.rate.filter(|_| !spec.local && !paced[level]) else {
                continue;
            };
            let budget = self.budget(endpoint, level, spec, host);
            let limit = limit(spec);
            let pace = Pace {
                spec,
                interval_us: (rate.interval().as_micros() as u64).max(1),
                deadline,
            };
            let gcra = pace.gcra(limit);
            let reserved = self
                .op("reserve", || self.store.reserve(&budget.tat, gcra))
                .await?;
            match reserved.decision {
                Decision::Granted { .. } => {}
                Decision::WaitUntil(at) => {
                    wait = wait.max(Duration::from_micros(
                        at.saturating_sub(reserved.store_time),
                    ))
                }
                Decision::Refused { wait_us } => {
                    return Err(Failure::Throttle(Error::Throttled {
                        stitch: endpoint.name,
                        would_wait: Some(Duration::from_micros(wait_us)),
                        limit: limit.unwrap_or_default(),
                    }))
                }
            }
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let held = leases.iter().any(Option::is_some);
        Ok(ThrottlePermit {
            _permits: Default::default(),
            waited: started.elapsed(),
            _fleet: held.then(|| Box::new(Held { _leases: leases })),
        })
    }

    /// Takes a lease of `budget` (at most `limit` holders fleet-wide), waiting at most `bound`;
    /// with `pace`, its pacing slot too, in the same store step ([`Store::lease_reserve`]).
    /// Returns the lease and how long to wait for the slot (zero without `pace`).
    async fn lease(
        self: &Arc<Self>,
        endpoint: &'static Endpoint,
        budget: &Arc<Budget>,
        limit: u32,
        bound: Option<Duration>,
        pace: Option<Pace<'_>>,
    ) -> Result<(Lease, Duration), Failure> {
        self.listen();
        let deadline = bound.map(|b| Instant::now() + b);
        let refused = || {
            Failure::Throttle(Error::Throttled {
                stitch: endpoint.name,
                would_wait: None,
                limit: bound.unwrap_or_default(),
            })
        };
        // FIFO within the instance, and one contender per instance: a release wakes at most one
        // task per instance, not every waiting task.
        let turn = match deadline {
            Some(d) => tokio::time::timeout_at(d, budget.turn.acquire())
                .await
                .map_err(|_| refused())?,
            None => budget.turn.acquire().await,
        };
        // The semaphore is never closed.
        let _turn = turn.ok();
        let holder = OpId::random();
        let ttl_us = self.lease_ttl.as_micros() as u64;
        // Until the lease is handed over, dropping this future (or failing) gives back whatever
        // the store may have granted under `holder` (an answer lost in a timeout included).
        let mut pending = Pending {
            inner: None,
            budget: budget.clone(),
            holder,
        };
        let slot = loop {
            if self.is_closed() {
                return Err(Failure::Closed);
            }
            // Registered before asking, so a release between the answer and the wait is not lost.
            let released = budget.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let request = LeaseRequest {
                limit,
                ttl_us,
                holder,
            };
            // Armed while an answer is outstanding: it may grant the lease and be lost.
            pending.inner = Some(self.clone());
            let (next_expiry, store_time) = match &pace {
                None => {
                    let grant = self
                        .op("lease_acquire", || {
                            self.store.lease_acquire(&budget.leases, request)
                        })
                        .await?;
                    pending.inner = None;
                    match grant.decision {
                        LeaseDecision::Acquired { .. } => break Duration::ZERO,
                        LeaseDecision::Full { next_expiry } => (next_expiry, grant.store_time),
                    }
                }
                Some(pace) => {
                    // The remaining bound when asking; one id per question (a retry of the same
                    // question reuses it).
                    let max_wait = pace.limit();
                    let gcra = pace.gcra(max_wait);
                    let answer = self
                        .op("lease_reserve", || {
                            self.store
                                .lease_reserve(&budget.leases, &budget.tat, request, gcra)
                        })
                        .await?;
                    pending.inner = None;
                    match answer.decision {
                        Admission::Admitted { at, .. } => {
                            break Duration::from_micros(at.saturating_sub(answer.store_time))
                        }
                        Admission::Full { next_expiry } => (next_expiry, answer.store_time),
                        Admission::Refused { wait_us } => {
                            return Err(Failure::Throttle(Error::Throttled {
                                stitch: endpoint.name,
                                would_wait: Some(Duration::from_micros(wait_us)),
                                limit: max_wait.unwrap_or_default(),
                            }))
                        }
                    }
                }
            };
            let expiry = Duration::from_micros(next_expiry.saturating_sub(store_time));
            let mut wake = Instant::now() + expiry.clamp(Duration::from_millis(1), RECHECK);
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    return Err(refused());
                }
                wake = wake.min(d);
            }
            tokio::select! {
                () = &mut released => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        };
        match Lease::hold(self.clone(), budget.clone(), holder) {
            Some(lease) => Ok((lease, slot)),
            None => {
                // Granted after the shutdown took its list: given back here.
                self.release(budget, holder).await;
                Err(Failure::Closed)
            }
        }
    }

    /// Starts the listener of the fleet's event channel (once): a released lease wakes the head
    /// of that budget's queue; a gap (lost messages) wakes every queue.
    fn listen(self: &Arc<Self>) {
        let mut listener = self.listener.lock().unwrap_or_else(|e| e.into_inner());
        if listener.as_ref().is_some_and(|l| !l.is_finished()) {
            return;
        }
        let mut stopped = self.stop.subscribe();
        let weak = Arc::downgrade(self);
        let (store, channel, limit) =
            (self.store.clone(), self.channel.clone(), self.store_timeout);
        *listener = Some(tokio::spawn(async move {
            loop {
                let subscribed = tokio::time::timeout(limit, store.subscribe(&channel)).await;
                if let Ok(Ok(mut events)) = subscribed {
                    // Releases while not subscribed were missed: everyone asks again.
                    match weak.upgrade() {
                        Some(inner) => inner.wake_all(),
                        None => return,
                    }
                    loop {
                        let event = tokio::select! {
                            _ = stopped.changed() => return,
                            event = events.next() => event,
                        };
                        let Some(inner) = weak.upgrade() else { return };
                        match event {
                            Some(Event::Message(key)) => inner.wake(&key),
                            Some(Event::Gap) => inner.wake_all(),
                            None => break,
                        }
                    }
                }
                // No subscription: waiters still re-check every `RECHECK`; try again shortly.
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }));
    }

    fn wake(&self, key: &[u8]) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        if let Some(b) = self
            .budgets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            b.released.notify_one();
        }
    }

    fn wake_all(&self) {
        for b in self
            .budgets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            b.released.notify_one();
        }
    }

    /// Gives back the leases whose release never finished (see `orphans`).
    async fn release_orphans(&self) {
        let orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        self.has_orphans
            .store(false, std::sync::atomic::Ordering::Release);
        for (holder, budget) in orphans {
            self.release(&budget, holder).await;
            self.forget(holder);
        }
    }

    /// `holder`'s lease is no longer this process's (released or expired).
    fn forget(&self, holder: OpId) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&holder);
    }

    /// Gives `holder`'s lease back (bounded, retried once), waking waiters fleet-wide.
    async fn release(&self, budget: &Budget, holder: OpId) {
        let released = self
            .op("lease_release", || {
                self.store
                    .lease_release(&budget.leases, holder, Some(&self.channel))
            })
            .await;
        if let Err(Failure::Store(e)) = released {
            tracing::warn!(error = %e, "could not release a fleet lease; it expires within its TTL");
        }
    }
}

/// A lease being acquired: released if the acquisition does not complete.
struct Pending {
    inner: Option<Arc<Inner>>,
    budget: Arc<Budget>,
    holder: OpId,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let (budget, holder) = (self.budget.clone(), self.holder);
            let orphan = Orphan::new(&inner, &budget, holder);
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        inner.release(&budget, holder).await;
                        orphan.disarm();
                    });
                }
                // Released by the next acquire (`orphan` is dropped armed).
                Err(_) => drop(orphan),
            }
        }
    }
}

/// A release still owed: dropped before [`Orphan::disarm`] (its task was dropped with its tokio
/// runtime, or there was no runtime to run it), it leaves the lease to the next acquire.
struct Orphan {
    inner: Option<Arc<Inner>>,
    budget: Arc<Budget>,
    holder: OpId,
}

impl Orphan {
    fn new(inner: &Arc<Inner>, budget: &Arc<Budget>, holder: OpId) -> Orphan {
        Orphan {
            inner: Some(inner.clone()),
            budget: budget.clone(),
            holder,
        }
    }

    fn disarm(mut self) {
        self.inner = None;
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if inner.is_closed() {
                return;
            }
            inner
                .orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.holder, self.budget.clone()));
            inner
                .has_orphans
                .store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Lease {
    /// Keeps `holder`'s lease alive (renewed every TTL/3) until the returned handle is dropped,
    /// then releases it; registered meanwhile for [`Fleet::shutdown`]. `None` once the runtime
    /// is shut down (the caller gives the lease back).
    fn hold(inner: Arc<Inner>, budget: Arc<Budget>, holder: OpId) -> Option<Lease> {
        {
            let mut held = inner.held.lock().unwrap_or_else(|e| e.into_inner());
            // Checked under the lock the shutdown takes: a lease registered here is in its list.
            if inner.is_closed() {
                return None;
            }
            held.insert(holder, budget.clone());
        }
        let (stop, mut stopped) = oneshot::channel::<()>();
        let mut shutdown = inner.stop.subscribe();
        let orphan = Orphan::new(&inner, &budget, holder);
        tokio::spawn(async move {
            // Armed until the lease is given back or no longer this process's to give.
            let orphan = orphan;
            let every = inner.lease_ttl / 3;
            let ttl_us = inner.lease_ttl.as_micros() as u64;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    // The shutdown releases every registered lease itself.
                    _ = shutdown.changed() => {
                        orphan.disarm();
                        return;
                    }
                    () = tokio::time::sleep(every) => {
                        let renewed = inner
                            .op("lease_renew", || inner.store.lease_renew(&budget.leases, holder, ttl_us))
                            .await;
                        match renewed {
                            Ok(true) => {}
                            // Released by a shutdown meanwhile: nothing to warn about.
                            Ok(false) if inner.is_closed() => {
                                orphan.disarm();
                                return;
                            }
                            // Expired (the store was unreachable for a whole TTL): the slot may
                            // already be someone else's; nothing to renew any more.
                            Ok(false) => {
                                tracing::warn!("a fleet lease expired while its attempt was running");
                                inner.forget(holder);
                                orphan.disarm();
                                let _ = stopped.await;
                                return;
                            }
                            Err(Failure::Store(e)) => {
                                tracing::warn!(error = %e, "could not renew a fleet lease");
                            }
                            Err(Failure::Throttle(_) | Failure::Closed) => {}
                        }
                    }
                }
            }
            inner.release(&budget, holder).await;
            inner.forget(holder);
            orphan.disarm();
        });
        Some(Lease { _stop: stop })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Endpoint, Method};
    use crate::store::MemoryStore;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex as StdMutex;

    const fn endpoint(name: &'static str, throttles: &'static [ThrottleSpec]) -> Endpoint {
        Endpoint::new(name, Method::Get, "/", &[]).throttles(throttles)
    }

    /// A fleet limiter on `store` with the tests' settings (paused-time pacing).
    fn fleet<S: Store + Clone>(store: &S, outage: ThrottleOutage) -> Fleet {
        Fleet::new(
            Arc::new(store.clone()),
            Settings {
                layout: KeyLayout::default(),
                store_timeout: Duration::from_millis(250),
                lease_ttl: Duration::from_secs(3),
                outage,
                clock: PacingClock::Tokio,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn two_instances_share_one_pacing_budget() {
        static EP: Endpoint = endpoint(
            "shared",
            &[ThrottleSpec::new(Pool::Stitch).rate(2, Duration::from_secs(1))],
        );
        let store = MemoryStore::default();
        let (a, b) = (
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
        );
        let t0 = Instant::now();
        let grants = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..6 {
            let f = if i % 2 == 0 { a.clone() } else { b.clone() };
            let g = grants.clone();
            tasks.push(tokio::spawn(async move {
                let _p = f.acquire(&EP, "h:1", None).await.unwrap();
                g.lock().unwrap().push((Instant::now() - t0).as_millis());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut g = grants.lock().unwrap().clone();
        g.sort();
        assert_eq!(g, [0, 500, 1000, 1500, 2000, 2500]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_local_declaration_keeps_its_budget_in_each_instance() {
        static LOCAL: Endpoint = endpoint(
            "local",
            &[ThrottleSpec::new(Pool::Stitch)
                .rate(2, Duration::from_secs(1))
                .local()],
        );
        // The seam's budget is the fleet's, the method's stays in each instance.
        static MIXED: Endpoint = endpoint(
            "mixed",
            &[
                ThrottleSpec::new(Pool::Seam("s")).rate(4, Duration::from_secs(1)),
                ThrottleSpec::new(Pool::Stitch)
                    .rate(2, Duration::from_secs(1))
                    .local(),
            ],
        );
        let store = MemoryStore::default();
        let (a, b) = (
            fleet(&store, ThrottleOutage::Fail),
            fleet(&store, ThrottleOutage::Fail),
        );
        let t0 = Instant::now();
        async fn grants(f: &Fleet, ep: &'static Endpoint, t0: Instant) -> Vec<u128> {
            let mut at = Vec::new();
            for _ in 0..3 {
                f.acquire(ep, "h:1", None).await.unwrap();
                at.push((Instant::now() - t0).as_millis());
            }
            at
        }
        let (ga, gb) = tokio::join!(grants(&a, &LOCAL, t0), grants(&b, &LOCAL, t0));
        // Each instance paces its own 2/s: a fleet budget would have spaced all six 500 ms apart.
        assert_eq!((ga, gb), (vec![0, 500, 1000], vec![0, 500, 1000]));
        let t1 = Instant::now();
        let (ma, mb) = tokio::join!(grants(&a, &MIXED, t1), grants(&b, &MIXED, t1));
        let mut all: Vec<u128> = ma.into_iter().chain(mb).collect();
        all.sort_unstable();
        // Each instance's own 2/s (500 ms) and, on top, the fleet's 4/s (250 ms) between all six.
        assert_eq!(all, [0, 250, 500, 750, 1000, 1250]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_every_held_lease_at_once() {
        static EP: Endpoint = endpoint("held", &[ThrottleSpec::new(Pool::Stitch).concurrency(2)]);
        let store = MemoryStore::default();
        let (a, b) = (
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
        );
        // `a` holds both slots and never drops the permits (as calls of a process about to exit).
        let held = [
            a.acquire(&EP, "h:1", None).await.unwrap(),
            a.acquire(&EP, "h:1", None).await.unwrap(),
        ];
        // A third caller of `a` waits for a slot when the shutdown comes.
        let queued = {
            let a = a.clone();
            tokio::spawn(async move { a.acquire(&EP, "h:1", None).await.map(|_| ()) })
        };
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let p = b.acquire(&EP, "h:1", None).await;
                (p, Instant::now() - t)
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the fleet's two slots are held");
        let t = Instant::now();
        a.shutdown().await;
        assert_eq!(Instant::now(), t, "a reachable store answers at once");
        // Released, not left to expire (the TTL is 3 s, the re-check 250 ms): woken at once.
        let (granted, waited) = waiting.await.unwrap();
        let _first = granted.unwrap();
        assert_eq!(waited.as_millis(), 100, "{waited:?}");
        // Both of `a`'s slots came back, not only the one a waiter was woken for.
        let _second = b
            .acquire(&EP, "h:1", Some(Instant::now() + Duration::from_millis(10)))
            .await
            .expect("the second slot is free too");
        assert!(matches!(
            queued.await.unwrap(),
            Err(Error::ThrottleUnavailable { .. })
        ));
        assert!(matches!(
            a.acquire(&EP, "h:1", None).await,
            Err(Error::ThrottleUnavailable { .. })
        ));
        // The permits dropped late take nothing from `b` (their leases are gone), and the
        // stopped renewals did not bring them back: `b` still holds both slots past the TTL.
        drop(held);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let third = b
            .acquire(&EP, "h:1", Some(Instant::now() + Duration::from_millis(10)))
            .await;
        assert!(
            matches!(third, Err(Error::Throttled { .. })),
            "`b` holds the fleet's two slots"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_lease_wakes_the_other_instance_at_once() {
        static EP: Endpoint = endpoint("one", &[ThrottleSpec::new(Pool::Stitch).concurrency(1)]);
        let store = MemoryStore::default();
        let (a, b) = (
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
        );
        let t0 = Instant::now();
        let held = a.acquire(&EP, "h:1", None).await.unwrap();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let _p = b.acquire(&EP, "h:1", None).await.unwrap();
                Instant::now() - t0
            })
        };
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert!(!waiter.is_finished(), "the cap is fleet-wide");
        drop(held);
        // Woken by the release event, not by the periodic re-check (250 ms) nor the TTL (3 s).
        let granted = waiter.await.unwrap();
        assert_eq!(granted.as_millis(), 110, "{granted:?}");
    }

    /// A `MemoryStore` as the outage tests need it, through its throttle verbs (`lease_reserve`,
    /// `lease_acquire`, `reserve`): switched off (they fail as unreachable), frozen (they never
    /// answer, as a SIGSTOPped Redis), without `lease_reserve` (a driver of the generation before
    /// it), and counting them.
    #[derive(Clone)]
    struct TestStore {
        store: MemoryStore,
        down: Arc<AtomicBool>,
        frozen: Arc<AtomicBool>,
        lease_reserve: bool,
        /// `lease_reserve`, `lease_acquire`, `reserve` calls received.
        calls: Arc<StdMutex<[usize; 3]>>,
    }

    impl TestStore {
        fn new(lease_reserve: bool) -> Self {
            TestStore {
                store: MemoryStore::default(),
                down: Arc::default(),
                frozen: Arc::default(),
                lease_reserve,
                calls: Arc::default(),
            }
        }

        fn up() -> Self {
            TestStore::new(true)
        }

        /// Calls that ask for a lease (`lease_reserve`, `lease_acquire`).
        fn asked(&self) -> usize {
            let calls = self.calls.lock().unwrap();
            calls[0] + calls[1]
        }

        /// Calls that reserve a slot (`lease_reserve`, `reserve`).
        fn reserves(&self) -> usize {
            let calls = self.calls.lock().unwrap();
            calls[0] + calls[2]
        }

        /// Counts a call of `verb` (an index into `calls`), then answers it with `forward` unless
        /// the store is down or frozen.
        fn throttle_verb<'a, T: Send + 'a>(
            &self,
            verb: usize,
            op: &'static str,
            forward: impl FnOnce() -> StoreFuture<'a, T>,
        ) -> StoreFuture<'a, T> {
            self.calls.lock().unwrap()[verb] += 1;
            if self.frozen.load(Ordering::SeqCst) {
                Box::pin(std::future::pending())
            } else if self.down.load(Ordering::SeqCst) {
                Box::pin(std::future::ready(Err(StoreError::unavailable(
                    op,
                    "connection refused",
                ))))
            } else {
                forward()
            }
        }
    }

    impl Store for TestStore {
        fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<bytes::Bytes>> {
            self.store.get(key)
        }
        fn set<'a>(&'a self, key: &'a str, v: bytes::Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
            self.store.set(key, v, ttl)
        }
        fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
            self.store.delete(key)
        }
        fn capabilities(&self) -> crate::store::Verbs {
            let all = self.store.capabilities();
            if self.lease_reserve {
                all
            } else {
                crate::store::Verbs::of(
                    &all.iter()
                        .filter(|v| *v != Verb::LeaseReserve)
                        .collect::<Vec<_>>(),
                )
            }
        }
        fn reserve<'a>(
            &'a self,
            key: &'a str,
            gcra: Gcra,
        ) -> StoreFuture<'a, crate::store::Reservation> {
            self.throttle_verb(2, "reserve", || self.store.reserve(key, gcra))
        }
        fn lease_acquire<'a>(
            &'a self,
            key: &'a str,
            l: LeaseRequest,
        ) -> StoreFuture<'a, crate::store::LeaseGrant> {
            self.throttle_verb(1, "lease_acquire", || self.store.lease_acquire(key, l))
        }
        fn lease_reserve<'a>(
            &'a self,
            leases: &'a str,
            tat: &'a str,
            l: LeaseRequest,
            gcra: Gcra,
        ) -> StoreFuture<'a, crate::store::LeaseReservation> {
            self.throttle_verb(0, "lease_reserve", || {
                if self.lease_reserve {
                    self.store.lease_reserve(leases, tat, l, gcra)
                } else {
                    Box::pin(std::future::ready(Err(StoreError::unsupported(
                        Verb::LeaseReserve,
                    ))))
                }
            })
        }
        fn lease_renew<'a>(
            &'a self,
            key: &'a str,
            holder: OpId,
            ttl_us: u64,
        ) -> StoreFuture<'a, bool> {
            self.store.lease_renew(key, holder, ttl_us)
        }
        fn lease_release<'a>(
            &'a self,
            key: &'a str,
            holder: OpId,
            notify: Option<&'a str>,
        ) -> StoreFuture<'a, bool> {
            self.store.lease_release(key, holder, notify)
        }
        fn subscribe<'a>(
            &'a self,
            channel: &'a str,
        ) -> StoreFuture<'a, crate::store::Subscription> {
            self.store.subscribe(channel)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_store_fails_the_attempt_then_recovers() {
        static EP: Endpoint = endpoint(
            "outage",
            &[ThrottleSpec::new(Pool::Stitch).rate(100, Duration::from_secs(1))],
        );
        let store = TestStore::up();
        let f = fleet(&store, ThrottleOutage::Fail);
        f.acquire(&EP, "h:1", None).await.unwrap();
        store.down.store(true, Ordering::SeqCst);
        let t = Instant::now();
        match f.acquire(&EP, "h:1", None).await {
            Err(Error::ThrottleUnavailable { source, .. }) => {
                assert_eq!(source.kind(), StoreErrorKind::Unavailable)
            }
            other => panic!("expected ThrottleUnavailable, got {:?}", other.map(|_| ())),
        }
        // Within the probe delay the store is not asked: still failing, even once it is back.
        store.down.store(false, Ordering::SeqCst);
        assert!(matches!(
            f.acquire(&EP, "h:1", None).await,
            Err(Error::ThrottleUnavailable { .. })
        ));
        assert_eq!(Instant::now(), t, "failing costs no wait");
        tokio::time::sleep(PROBE_AFTER).await;
        f.acquire(&EP, "h:1", None).await.expect("recovered");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_store_falls_back_to_the_local_share() {
        static EP: Endpoint = endpoint(
            "fallback",
            &[ThrottleSpec::new(Pool::Stitch).rate(2, Duration::from_secs(1))],
        );
        let store = TestStore::up();
        store.down.store(true, Ordering::SeqCst);
        let f = fleet(&store, ThrottleOutage::local(0.5));
        let t0 = Instant::now();
        let mut grants = Vec::new();
        for _ in 0..3 {
            f.acquire(&EP, "h:1", None).await.unwrap();
            grants.push((Instant::now() - t0).as_millis());
        }
        assert_eq!(
            grants,
            [0, 1000, 2000],
            "half of 2/s: paced, never unthrottled"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_store_failure_one_acquire_at_a_time_probes_it() {
        static EP: Endpoint = endpoint(
            "probe",
            &[ThrottleSpec::new(Pool::Stitch).rate(1000, Duration::from_secs(1))],
        );
        let store = TestStore::up();
        let f = Arc::new(fleet(&store, ThrottleOutage::Fail));
        let wave = || {
            let t = Instant::now();
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let f = f.clone();
                    tokio::spawn(async move {
                        let ok = f.acquire(&EP, "h:1", None).await.is_ok();
                        (ok, (Instant::now() - t).as_millis())
                    })
                })
                .collect();
            async move {
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
                out.sort();
                out
            }
        };
        store.frozen.store(true, Ordering::SeqCst);
        // Nothing is known yet: every acquire asks, and each pays the timeout, retried once.
        assert_eq!(wave().await, [(false, 500); 4]);
        assert_eq!(store.reserves(), 8);
        // Past the probe delay, one acquire probes (and pays the timeout again); the others fail
        // at once instead of each leaving a reservation in the frozen store.
        tokio::time::sleep(PROBE_AFTER).await;
        assert_eq!(
            wave().await,
            [(false, 0), (false, 0), (false, 0), (false, 500)]
        );
        assert_eq!(store.reserves(), 10, "one probe");
        // The store is back: the next probe succeeds and every acquire asks it again.
        store.frozen.store(false, Ordering::SeqCst);
        tokio::time::sleep(PROBE_AFTER).await;
        f.acquire(&EP, "h:1", None)
            .await
            .expect("the probe succeeds");
        assert!(wave().await.iter().all(|(ok, _)| *ok));
        assert_eq!(store.reserves(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_refuses_within_the_bound_and_leases_are_renewed() {
        static EP: Endpoint = endpoint(
            "bounded",
            &[ThrottleSpec::new(Pool::Stitch)
                .concurrency(1)
                .max_wait(Duration::from_millis(400))],
        );
        let store = MemoryStore::default();
        let (a, b) = (
            fleet(&store, ThrottleOutage::Fail),
            fleet(&store, ThrottleOutage::Fail),
        );
        let held = a.acquire(&EP, "h:1", None).await.unwrap();
        // Held for 4 TTLs: renewals keep the slot (an expiry would let `b` in).
        tokio::time::sleep(Duration::from_secs(12)).await;
        let t = Instant::now();
        match b.acquire(&EP, "h:1", None).await {
            Err(Error::Throttled {
                would_wait: None,
                limit,
                ..
            }) => {
                assert_eq!(limit, Duration::from_millis(400))
            }
            other => panic!("expected Throttled, got {:?}", other.map(|_| ())),
        }
        assert_eq!((Instant::now() - t).as_millis(), 400);
        drop(held);
        tokio::task::yield_now().await;
        b.acquire(&EP, "h:1", None).await.unwrap();
    }
    #[tokio::test(start_paused = true)]
    async fn waiters_queue_fifo_and_one_per_instance_asks_the_store() {
        static EP: Endpoint = endpoint("fifo", &[ThrottleSpec::new(Pool::Stitch).concurrency(1)]);
        let store = TestStore::up();
        let (a, b) = (
            fleet(&store, ThrottleOutage::Fail),
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
        );
        let held = a.acquire(&EP, "h:1", None).await.unwrap();
        let order = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = b.acquire(&EP, "h:1", None).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // `a`'s acquire, then only the head of `b`'s queue: at once and every 250 ms. Five
        // contenders would have asked five times as often.
        let asked = store.asked();
        assert!((2..=7).contains(&asked), "{asked} lease requests");
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_and_a_cap_on_one_declaration_take_one_store_step() {
        static EP: Endpoint = endpoint(
            "both",
            &[ThrottleSpec::new(Pool::Stitch)
                .rate(10, Duration::from_secs(1))
                .concurrency(2)],
        );
        // With the verb: one `lease_reserve` per acquire. Without it (an older driver): the same
        // grants from a `lease_acquire` and a `reserve` each.
        for (combined, calls) in [(true, [5, 0, 0]), (false, [0, 5, 5])] {
            let store = TestStore::new(combined);
            let f = fleet(&store, ThrottleOutage::Fail);
            let t0 = Instant::now();
            let mut grants = Vec::new();
            for _ in 0..5 {
                let permit = f.acquire(&EP, "h:1", None).await.unwrap();
                grants.push((Instant::now() - t0).as_millis());
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(permit);
            }
            assert_eq!(grants, [0, 100, 200, 300, 400], "combined: {combined}");
            assert_eq!(*store.calls.lock().unwrap(), calls, "combined: {combined}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cap_reserves_no_slot_while_waiting() {
        static EP: Endpoint = endpoint(
            "both-waiting",
            &[ThrottleSpec::new(Pool::Stitch)
                .rate(10, Duration::from_secs(1))
                .concurrency(2)],
        );
        let store = TestStore::new(true);
        let (a, b) = (
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
            Arc::new(fleet(&store, ThrottleOutage::Fail)),
        );
        let t0 = Instant::now();
        let take = |f: Arc<Fleet>, hold: Duration| {
            tokio::spawn(async move {
                let permit = f.acquire(&EP, "h:1", None).await;
                let at = (Instant::now() - t0).as_millis();
                tokio::time::sleep(hold).await;
                drop(permit);
                at
            })
        };
        // `a` holds both slots for 1 s (granted at 0 and 100 ms); `b` waits for a lease without
        // reserving: when it gets one (1 s) its slot is now, not behind slots it would have
        // booked while waiting.
        let first = take(a.clone(), Duration::from_secs(1));
        let second = take(a.clone(), Duration::from_secs(1));
        tokio::task::yield_now().await;
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let r = b
                    .acquire(&EP, "h:1", Some(t0 + Duration::from_secs(5)))
                    .await;
                (r.map(drop), (Instant::now() - t0).as_millis())
            })
        };
        let mut held = [first.await.unwrap(), second.await.unwrap()];
        held.sort_unstable();
        assert_eq!(held, [0, 100]);
        let (granted, at) = waiter.await.unwrap();
        granted.unwrap();
        assert_eq!(at, 1000, "a lease freed at 1 s, its slot at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_beyond_the_bound_takes_no_lease_and_reserves_nothing() {
        static EP: Endpoint = endpoint(
            "both-far",
            &[ThrottleSpec::new(Pool::Stitch)
                .rate(10, Duration::from_secs(1))
                .concurrency(3)
                .max_wait(Duration::from_millis(150))],
        );
        let store = TestStore::new(true);
        let f = Arc::new(fleet(&store, ThrottleOutage::Fail));
        let _first = f.acquire(&EP, "h:1", None).await.unwrap();
        let second = {
            let f = f.clone();
            tokio::spawn(async move { f.acquire(&EP, "h:1", None).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        // Slot 200 ms away, bound 150 ms: refused with a lease free. The next caller is refused
        // the same way: the refusal took no lease (a full cap would make it wait for one and be
        // refused without a would-be wait) and reserved no slot (its wait would be 300 ms).
        for _ in 0..2 {
            match f.acquire(&EP, "h:1", None).await {
                Err(Error::Throttled {
                    would_wait: Some(w),
                    limit,
                    ..
                }) => assert_eq!(
                    (w, limit),
                    (Duration::from_millis(200), Duration::from_millis(150))
                ),
                other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
            }
        }
        second.await.unwrap().unwrap();
    }
}
