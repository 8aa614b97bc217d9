//! Request coalescing: concurrent calls with the same key share one upstream request.
//!
//! The request runs in its own task, owned by no caller: dropping the first caller (or any) does
//! not cancel it while others wait, so nobody has to take over and no second request is sent. Every
//! caller is a waiter; when the last waiter leaves before the outcome, the task is aborted and the
//! entry removed. The outcome (value or error, after retries) goes to every waiter present when it
//! is published; the entry is removed at that moment, after the value was stored, so a caller
//! arriving later finds the cache instead.
//!
//! With a fleet tier, the leader's first step (one claim on the shared store, which answers most
//! calls with the value) runs inline in the leader's own future ([`Flights::lead`]): a hit costs
//! no task and no wake-up from another thread (BENCHMARKS.md, "Fleet cache on Redis"). Only the
//! rest of the work (fetch, or wait for another instance) becomes the flight's task. Callers that
//! join meanwhile wait as usual; if the leader is dropped during its first step while they wait,
//! the work starts over as the flight's task, so they are never stranded.
//!
//! Invariant: the in-flight map never holds an entry without a live task or a waiter (a leader
//! running its first step inline counts as a waiter).

use crate::cache::key::CacheKey;
use crate::cache::local::Value;
use crate::error::{Error, Result};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

type Outcome = Option<Result<Value>>;

struct Flight {
    id: u64,
    /// Set by an exact invalidation of the key while the request runs: the flight must not
    /// store what it fetched (the invalidation wins; its value still reaches its waiters). See
    /// [`Invalidated`].
    stale: Invalidated,
    /// Where the outcome is published, made when the first caller waits for it (a follower, or
    /// the leader once the work runs as a task): a flight whose leader answers inline with
    /// nobody else waiting (a fleet L2 hit, the common case) makes no channel (measured: the
    /// channel's allocation and its close cost ~0.6 K instructions per hit).
    outcome: Option<watch::Sender<Outcome>>,
    waiters: usize,
    /// `None` while the leader runs its first step inline ([`Flights::lead`]).
    task: Option<tokio::task::AbortHandle>,
}

impl Flight {
    /// A receiver of the flight's outcome (the channel is made by the first one).
    fn subscribe(&mut self) -> watch::Receiver<Outcome> {
        self.outcome
            .get_or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }
}

/// The flights of one runtime by key.
type FlightMap = crate::fasthash::FastMap<CacheKey, Flight>;

/// The in-flight requests of one runtime.
#[derive(Default)]
pub(crate) struct Flights {
    /// Keyed by a BLAKE3 digest, hashed with the per-process seeded `foldhash` (`fasthash.rs`)
    /// rather than SipHash, whose cost showed in every flight's insert, lookups and removal:
    /// flooding one bucket would take grinding BLAKE3 outputs against a seed nobody outside the
    /// process knows (the in-process tier, quick_cache, hashes its keys with foldhash too).
    map: Mutex<FlightMap>,
    next_id: AtomicU64,
}

/// What a caller found under the flights lock (see [`Flights::join`]).
enum Joined {
    Stored(Value),
    Follower(watch::Receiver<Outcome>, Waiter),
    Vacant(u64),
}

/// How a caller got its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Leader,
    Follower,
    /// The value was stored by a flight that ended just before.
    Stored,
}

struct Waiter {
    flights: Arc<Flights>,
    key: CacheKey,
    id: u64,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        if let Some(flight) = map.get_mut(&self.key) {
            if flight.id == self.id {
                flight.waiters -= 1;
                if flight.waiters == 0 {
                    // Nobody wants the outcome any more: stop the request and forget it.
                    if let Some(task) = &flight.task {
                        task.abort();
                    }
                    map.remove(&self.key);
                }
            }
        }
    }
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlightMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the flight of `key`, if one runs, as invalidated: it will not store its value.
    pub(crate) fn invalidate(&self, key: &CacheKey) {
        self.invalidate_at(key, u64::MAX);
    }

    /// Marks the flight of `key`, if one runs, as invalidated by a fleet invalidation that moved
    /// the key's fill generation to `generation`: a fill claimed at that generation or later
    /// began after it and may store its value; anything else may not (see [`Invalidated`]).
    pub(crate) fn invalidate_at(&self, key: &CacheKey, generation: u64) {
        if let Some(flight) = self.lock().get(key) {
            flight.stale.0.fetch_max(generation, Ordering::SeqCst);
        }
    }

    /// Number of requests in flight (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Joins the flight for `key`, or starts one running `work()`.
    ///
    /// `stored` looks the key up in the cache again under the flights lock before a new flight
    /// starts: a flight stores its value before it leaves the map, so a caller that missed the
    /// cache just before a flight ended finds the value here instead of sending a second request.
    /// `work` gets the flight's invalidation flag (see [`Flights::invalidate`]).
    pub(crate) async fn run<F, W>(
        self: &Arc<Self>,
        key: CacheKey,
        stored: impl FnOnce() -> Option<Value>,
        work: W,
    ) -> (Result<Value>, Role)
    where
        W: FnOnce(Invalidated) -> F,
        F: Future<Output = Result<Value>> + Send + 'static,
    {
        let (rx, waiter, role) = {
            let mut map = self.lock();
            match self.join(&mut map, key, stored) {
                Joined::Stored(value) => return (Ok(value), Role::Stored),
                Joined::Follower(rx, waiter) => (rx, waiter, Role::Follower),
                Joined::Vacant(id) => {
                    let (tx, rx) = watch::channel(None);
                    let stale = Invalidated::default();
                    // Spawned under the lock: the task publishes through the entry, which is
                    // in the map before the task can look.
                    let task = self.spawn_flight(key, id, work(stale.clone()));
                    map.insert(
                        key,
                        Flight {
                            id,
                            stale,
                            outcome: Some(tx),
                            waiters: 1,
                            task: Some(task),
                        },
                    );
                    (rx, self.waiter(key, id), Role::Leader)
                }
            }
        };
        (wait(rx, waiter).await, role)
    }

    /// Under the flights lock: the value stored by a flight that just ended, the running flight
    /// of `key` joined as one more waiter, or the id of the flight the caller starts.
    fn join(
        self: &Arc<Self>,
        map: &mut FlightMap,
        key: CacheKey,
        stored: impl FnOnce() -> Option<Value>,
    ) -> Joined {
        if let Some(flight) = map.get_mut(&key) {
            flight.waiters += 1;
            return Joined::Follower(flight.subscribe(), self.waiter(key, flight.id));
        }
        match stored() {
            Some(value) => Joined::Stored(value),
            None => Joined::Vacant(self.next_id.fetch_add(1, Ordering::Relaxed)),
        }
    }

    fn waiter(self: &Arc<Self>, key: CacheKey, id: u64) -> Waiter {
        Waiter {
            flights: self.clone(),
            key,
            id,
        }
    }

    /// Runs `fut` as the flight `id` of `key`: its outcome is published to the flight's callers
    /// and the entry removed in one step. Call with the flights lock held (the entry must be in
    /// the map, or be put there under the same lock, before the task can publish).
    fn spawn_flight<F>(self: &Arc<Self>, key: CacheKey, id: u64, fut: F) -> tokio::task::AbortHandle
    where
        F: Future<Output = Result<Value>> + Send + 'static,
    {
        let mut publishing = Publishing {
            flights: self.clone(),
            key,
            id,
            done: false,
        };
        let task = tokio::spawn(async move {
            let outcome = fut.await;
            publishing.done = true;
            publishing.flights.publish(key, id, outcome);
        });
        task.abort_handle()
    }

    /// Ends the flight `id` of `key` with `outcome`. Published under the lock: a caller either
    /// joined before (and sees this) or arrives after the entry is gone (and finds the stored
    /// value). A flight no longer in the map has nobody waiting (its task was aborted).
    fn publish(&self, key: CacheKey, id: u64, outcome: Result<Value>) {
        let mut map = self.lock();
        if map.get(&key).is_some_and(|f| f.id == id) {
            if let Some(tx) = map.remove(&key).and_then(|f| f.outcome) {
                tx.send_replace(Some(outcome));
            }
        }
    }

    /// Joins the flight for `key`, or leads a new one whose first step, `first`, runs inline in
    /// this caller's future; `then` turns its answer into the outcome ([`Next::Done`]: every
    /// caller of the flight gets it) or into the rest of the work ([`Next::Rest`]: run as the
    /// flight's own task, which this caller then waits for like the others).
    ///
    /// If this caller is dropped during `first` while others wait, `then` is called with `None`
    /// and its work runs as the flight's task: the first step's answer is lost, so that work must
    /// start from the beginning (and whatever `first` took must be given back by `first` itself
    /// when dropped: see `FleetCache::claim`). `stored` and the invalidation flag are as in
    /// [`Flights::run`].
    pub(crate) async fn lead<T, C, F>(
        self: &Arc<Self>,
        key: CacheKey,
        stored: impl FnOnce() -> Option<Value>,
        first: impl Future<Output = T>,
        then: C,
    ) -> (Result<Value>, Role)
    where
        C: FnOnce(Invalidated, Option<T>) -> Next<F> + Send + 'static,
        F: Future<Output = Result<Value>> + Send + 'static,
    {
        let joined = {
            let mut map = self.lock();
            match self.join(&mut map, key, stored) {
                Joined::Stored(value) => return (Ok(value), Role::Stored),
                Joined::Follower(rx, waiter) => Err((rx, waiter)),
                Joined::Vacant(id) => {
                    let stale = Invalidated::default();
                    map.insert(
                        key,
                        Flight {
                            id,
                            stale: stale.clone(),
                            outcome: None,
                            waiters: 1,
                            task: None,
                        },
                    );
                    Ok((id, stale))
                }
            }
        };
        let (id, stale) = match joined {
            Ok(lead) => lead,
            Err((rx, waiter)) => return (wait(rx, waiter).await, Role::Follower),
        };
        let mut leading = Leading {
            flights: self.clone(),
            key,
            id,
            armed: true,
            then: Some(then),
            stale,
            first: std::marker::PhantomData,
        };
        let answer = first.await;
        // No await from here to the end of the step: this caller cannot be dropped in between.
        // (A panic in `then` drops `leading` armed: the followers get an error.)
        let next = match leading.then.take() {
            Some(then) => then(leading.stale.clone(), Some(answer)),
            None => Next::Done(Err(aborted())),
        };
        leading.armed = false;
        let rx = {
            let mut map = self.lock();
            match (map.get_mut(&key).filter(|f| f.id == id), next) {
                (_, Next::Done(outcome)) => {
                    // Only followers need the outcome published (they made the channel).
                    if let Some(tx) = map
                        .remove(&key)
                        .filter(|f| f.id == id)
                        .and_then(|f| f.outcome)
                    {
                        tx.send_replace(Some(outcome.clone()));
                    }
                    return (outcome, Role::Leader);
                }
                (Some(flight), Next::Rest(fut)) => {
                    let rx = flight.subscribe();
                    // Spawned under the lock, as in `run`: no caller sees the entry without
                    // its task once this one waits like the others.
                    flight.task = Some(self.spawn_flight(key, id, fut));
                    Ok(rx)
                }
                // Not expected (the leader counts as a waiter, so its entry stays): nobody else
                // can be waiting on this flight, so its work is the leader's alone.
                (None, Next::Rest(fut)) => Err(fut),
            }
        };
        let rx = match rx {
            Ok(rx) => rx,
            Err(fut) => return (fut.await, Role::Leader),
        };
        (wait(rx, self.waiter(key, id)).await, Role::Leader)
    }
}

/// Whether, and by what, a flight was invalidated while it ran: `0` not at all; a fleet fill
/// generation `g`, an invalidation elsewhere in the fleet that moved the key's generation to `g`
/// (a fill claimed at `g` or later began after it); `u64::MAX`, an invalidation in this process
/// (or one whose generation is unknown). Clones share the mark.
#[derive(Clone, Default)]
pub(crate) struct Invalidated(Arc<AtomicU64>);

impl Invalidated {
    /// Whether any invalidation arrived: nothing fetched may be kept.
    pub(crate) fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }

    /// Whether an invalidation arrived that a fleet fill claimed at `generation` did not see.
    pub(crate) fn since_claim_at(&self, generation: u64) -> bool {
        self.0.load(Ordering::SeqCst) > generation
    }
}

/// What [`Flights::lead`]'s leader does after its inline first step.
pub(crate) enum Next<F> {
    /// The flight's outcome: every caller of the flight gets it, now.
    Done(Result<Value>),
    /// The rest of the work, run as the flight's own task.
    Rest(F),
}

/// The leader of [`Flights::lead`] while its first step runs inline. Dropped still armed, the
/// step was cut short (the caller was dropped, or `then` panicked): the followers get
/// the work started over as the flight's task, or an error when that is not possible; with no
/// followers the entry goes.
struct Leading<T, C, F>
where
    C: FnOnce(Invalidated, Option<T>) -> Next<F> + Send + 'static,
    F: Future<Output = Result<Value>> + Send + 'static,
{
    flights: Arc<Flights>,
    key: CacheKey,
    id: u64,
    /// Set until the leader has taken its step's answer.
    armed: bool,
    then: Option<C>,
    stale: Invalidated,
    first: std::marker::PhantomData<fn(T)>,
}

impl<T, C, F> Drop for Leading<T, C, F>
where
    C: FnOnce(Invalidated, Option<T>) -> Next<F> + Send + 'static,
    F: Future<Output = Result<Value>> + Send + 'static,
{
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (key, id) = (self.key, self.id);
        let mut map = self.flights.lock();
        let Some(flight) = map.get_mut(&key).filter(|f| f.id == id) else {
            return;
        };
        flight.waiters -= 1;
        if flight.waiters == 0 {
            map.remove(&key);
            return;
        }
        let next = match (self.then.take(), tokio::runtime::Handle::try_current()) {
            (Some(then), Ok(_)) => then(self.stale.clone(), None),
            // `then` panicked, or no runtime is left to run the work on.
            _ => Next::Done(Err(aborted())),
        };
        match next {
            Next::Rest(fut) => {
                let task = self.flights.spawn_flight(key, id, fut);
                if let Some(flight) = map.get_mut(&key) {
                    flight.task = Some(task);
                }
            }
            Next::Done(outcome) => {
                if let Some(tx) = map.remove(&key).and_then(|f| f.outcome) {
                    tx.send_replace(Some(outcome));
                }
            }
        }
    }
}

/// A flight's task until it publishes: if it ends without publishing (it panicked), its callers
/// get an error instead of waiting for ever (the channel lives in the entry, not the task).
struct Publishing {
    flights: Arc<Flights>,
    key: CacheKey,
    id: u64,
    done: bool,
}

impl Drop for Publishing {
    fn drop(&mut self) {
        if !self.done {
            // Aborted (nobody waits: the entry is gone, this finds nothing) or panicked.
            self.flights.publish(self.key, self.id, Err(aborted()));
        }
    }
}

async fn wait(mut rx: watch::Receiver<Outcome>, waiter: Waiter) -> Result<Value> {
    let outcome = match rx.wait_for(Option::is_some).await {
        Ok(guard) => guard.clone().unwrap_or_else(|| Err(aborted())),
        // The task ended without publishing (it panicked): report, do not hang.
        Err(_) => Err(aborted()),
    };
    drop(waiter);
    outcome
}

fn aborted() -> Error {
    Error::Config {
        stitch: "coalescing",
        reason: "the shared upstream request ended without an outcome (its task panicked)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    fn value(n: u32) -> Value {
        Arc::new(n)
    }

    fn number(outcome: &Result<Value>) -> Option<u32> {
        outcome.as_ref().ok()?.downcast_ref::<u32>().copied()
    }

    /// Until a flight runs (`key: None`: any), or the flight of `key` has `waiters` callers.
    async fn waiting(flights: &Flights, key: Option<CacheKey>, waiters: usize) {
        loop {
            let ready = match key {
                None => flights.len() >= waiters,
                Some(k) => flights.lock().get(&k).map(|f| f.waiters) == Some(waiters),
            };
            if ready {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    /// A `then` for `lead` that ends the flight with `n` (the step's answer ignored).
    fn done(
        n: u32,
    ) -> impl FnOnce(Invalidated, Option<()>) -> Next<std::future::Ready<Result<Value>>> + Send
    {
        move |_, _| Next::Done(Ok(value(n)))
    }

    #[tokio::test]
    async fn a_leader_answering_inline_alone_leaves_nothing_behind() {
        let flights = Arc::new(Flights::default());
        let (outcome, role) = flights.lead(key(1), || None, async {}, done(7)).await;
        assert_eq!((number(&outcome), role), (Some(7), Role::Leader));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_follower_joining_during_the_inline_step_gets_its_outcome() {
        let flights = Arc::new(Flights::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .lead(key(2), || None, async { released.await.unwrap() }, done(8))
                    .await
            })
        };
        waiting(&flights, None, 1).await;
        let follower = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(key(2), || None, |_| async { Ok(value(99)) })
                    .await
            })
        };
        // The follower has joined once the entry counts two waiters.
        waiting(&flights, Some(key(2)), 2).await;
        release.send(()).unwrap();
        let (lead, role) = leader.await.unwrap();
        assert_eq!((number(&lead), role), (Some(8), Role::Leader));
        let (followed, role) = follower.await.unwrap();
        assert_eq!((number(&followed), role), (Some(8), Role::Follower));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_leader_dropped_during_its_step_hands_the_work_to_a_task_for_its_followers() {
        let flights = Arc::new(Flights::default());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .lead(
                        key(3),
                        || None,
                        std::future::pending::<()>(),
                        |_, answer: Option<()>| {
                            assert!(answer.is_none(), "the step never answered");
                            Next::Rest(async { Ok(value(5)) })
                        },
                    )
                    .await
            })
        };
        waiting(&flights, None, 1).await;
        let follower = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(key(3), || None, |_| async { Ok(value(99)) })
                    .await
            })
        };
        waiting(&flights, Some(key(3)), 2).await;
        leader.abort();
        let _ = leader.await;
        let (outcome, role) = tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("the follower is not stranded")
            .unwrap();
        assert_eq!((number(&outcome), role), (Some(5), Role::Follower));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_flight_whose_task_panics_fails_its_callers_instead_of_stranding_them() {
        let flights = Arc::new(Flights::default());
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let flights = flights.clone();
                tokio::spawn(async move {
                    flights
                        .run(
                            key(4),
                            || None,
                            |_| async {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                panic!("the upstream work panicked");
                            },
                        )
                        .await
                })
            })
            .collect();
        for caller in callers {
            let (outcome, _) = tokio::time::timeout(Duration::from_secs(5), caller)
                .await
                .expect("a caller of a panicked flight is not stranded")
                .unwrap();
            assert!(
                matches!(
                    outcome,
                    Err(Error::Config {
                        stitch: "coalescing",
                        ..
                    })
                ),
                "{outcome:?}"
            );
        }
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_flight_nobody_waits_for_any_more_is_stopped_and_forgotten() {
        let flights = Arc::new(Flights::default());
        let (dropped, on_drop) = tokio::sync::oneshot::channel::<()>();
        struct Signal(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for Signal {
            fn drop(&mut self) {
                let _ = self.0.take().map(|s| s.send(()));
            }
        }
        let caller = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run(
                        key(6),
                        || None,
                        move |_| async move {
                            let _signal = Signal(Some(dropped));
                            std::future::pending::<Result<Value>>().await
                        },
                    )
                    .await
            })
        };
        waiting(&flights, None, 1).await;
        caller.abort();
        let _ = caller.await;
        tokio::time::timeout(Duration::from_secs(5), on_drop)
            .await
            .expect("the flight's task is aborted")
            .unwrap();
        assert_eq!(flights.len(), 0);
        // A new flight for the key starts afresh.
        let (outcome, role) = flights
            .run(key(6), || None, |_| async { Ok(value(6)) })
            .await;
        assert_eq!((number(&outcome), role), (Some(6), Role::Leader));
    }
}
