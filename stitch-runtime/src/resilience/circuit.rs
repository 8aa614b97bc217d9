//! The circuit breaker: after `failures` consecutive failed calls the circuit opens and calls fail
//! fast without touching the network; after `cooldown` it is half-open and admits exactly one
//! trial call (the others keep failing fast until it resolves); success closes it, failure opens
//! it again.
//!
//! What counts as a failure: a transport error, a timeout, a 5xx or 429 (the upstream is unwell).
//! A 4xx or a decode error is the caller's or the contract's problem, not the upstream's health.
//! State sits behind a seam chosen when the runtime is built ([`CircuitSeam`]): in-process
//! ([`Circuits`], per stitch and per runtime), or, with a store that implements the `circuit` verb
//! attached, fleet-wide ([`FleetCircuits`]): the failure count, the open state and the single
//! half-open trial are ONE value in the store, changed by one atomic step on the store's clock
//! ([`Store::circuit`]), so `failures = 3` counts failures of every process on the store, the
//! circuit opens for all of them, exactly one call of the whole fleet is the trial after the
//! cooldown, and its success closes the circuit for all. Across processes a circuit is identified
//! by the stitch's `name` (under the runtime's `key_prefix`). A trial's claim lasts the call's
//! total timeout, so a trial whose process died is taken over after it. A circuit declared
//! `circuit(..., local)` stays in-process even with such a store.
//!
//! Outage: a store step that fails (or does not answer within the store timeout, retried once)
//! admits the call with the runtime's in-process circuit instead, counted as degraded
//! (`stitch_degraded_total{decision="circuit_local"}`); the store is then skipped for
//! [`PROBE_AFTER`] by the runtime's store breaker (shared with the cache and the throttles), so an
//! outage costs one store timeout, not one per call, and asked again after.
//! An outage of the store never stops upstream calls by itself.

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::meter;
use crate::store::breaker::StoreBreaker;
#[cfg(doc)]
use crate::store::breaker::PROBE_AFTER;
use crate::store::keys::KeyLayout;
use crate::store::{
    CircuitEvent, CircuitPhase, CircuitReply, CircuitState, CircuitStep, OpId, Store, StoreError,
    StoreErrorKind,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A stitch's `circuit(failures = N, cooldown = "...")` declaration.
#[derive(Debug, Clone, Copy)]
pub struct CircuitPolicy {
    pub(crate) failures: u32,
    pub(crate) cooldown: Duration,
    /// `circuit(..., local)`: kept in-process even with a store attached.
    pub(crate) local: bool,
}

#[doc(hidden)]
impl CircuitPolicy {
    pub const fn new(failures: u32, cooldown: Duration) -> Self {
        CircuitPolicy {
            failures,
            cooldown,
            local: false,
        }
    }
    pub const fn local(mut self) -> Self {
        self.local = true;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial: bool },
}

/// The circuits of one runtime.
#[derive(Default)]
pub(crate) struct Circuits {
    /// Keyed by the descriptor's identity, not its name: two stitches sharing a `name` keep their
    /// own circuits.
    states: Mutex<HashMap<usize, Arc<Mutex<State>>>>,
}

/// Admission to one call; reports the outcome (or, dropped unreported, frees the trial slot).
pub(crate) struct Admission {
    state: Arc<Mutex<State>>,
    policy: CircuitPolicy,
    trial: bool,
    reported: bool,
}

impl Circuits {
    /// Admits a call, or fails fast with [`Error::CircuitOpen`].
    pub(crate) fn admit(
        &self,
        endpoint: &'static crate::endpoint::Endpoint,
        policy: &CircuitPolicy,
    ) -> Result<Admission> {
        let stitch = endpoint.name;
        let state = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(endpoint.id())
            .or_insert_with(|| Arc::new(Mutex::new(State::Closed { failures: 0 })))
            .clone();
        let now = Instant::now();
        let trial = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            match *s {
                State::Closed { .. } => false,
                State::Open { until } if now < until => {
                    return Err(Error::CircuitOpen {
                        stitch,
                        retry_in: until - now,
                    })
                }
                State::Open { .. } | State::HalfOpen { trial: false } => {
                    *s = State::HalfOpen { trial: true };
                    true
                }
                State::HalfOpen { trial: true } => {
                    return Err(Error::CircuitOpen {
                        stitch,
                        retry_in: Duration::ZERO,
                    })
                }
            }
        };
        tracing::Span::current().record("circuit", if trial { "half-open" } else { "closed" });
        Ok(Admission {
            state,
            policy: *policy,
            trial,
            reported: false,
        })
    }

    /// The circuit's state name (for tests and metrics): `closed`, `open` or `half-open`.
    pub(crate) fn state(&self, endpoint: &crate::endpoint::Endpoint) -> &'static str {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        match states
            .get(&endpoint.id())
            .map(|s| *s.lock().unwrap_or_else(|e| e.into_inner()))
        {
            None | Some(State::Closed { .. }) => "closed",
            Some(State::Open { until }) if Instant::now() < until => "open",
            Some(_) => "half-open",
        }
    }
}

/// Whether an outcome says the upstream is unwell.
fn is_failure<T>(outcome: &Result<T>) -> bool {
    match outcome {
        Ok(_) => false,
        Err(Error::Transport { .. } | Error::Timeout { .. } | Error::RateLimited { .. }) => true,
        Err(Error::Status { status, .. }) => status.is_server_error() || status.as_u16() == 429,
        Err(_) => false,
    }
}

/// Whether an outcome ended the call before any request reached the upstream (a throttle's
/// refusal, a refused argument or configuration).
fn never_sent<T>(outcome: &Result<T>) -> bool {
    matches!(
        outcome,
        Err(Error::Throttled { .. }
            | Error::ThrottleUnavailable { .. }
            | Error::CircuitOpen { .. }
            | Error::InvalidArgument { .. }
            | Error::Config { .. })
    )
}

/// How a reported outcome moved the circuit (what a shared store must learn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Unchanged,
    /// Now open for this long.
    Opened(Duration),
    /// Closed after having been open or half-open.
    Closed,
}

impl Admission {
    pub(crate) fn report<T>(mut self, outcome: &Result<T>) -> Transition {
        self.reported = true;
        let failed = is_failure(outcome);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let before = *s;
        *s = match (*s, failed) {
            // A call admitted while the circuit was closed that ends after it opened is not the
            // half-open trial: only the trial decides (its outcome, or the cooldown's end).
            (state @ (State::Open { .. } | State::HalfOpen { .. }), _) if !self.trial => state,
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true)
                if failures + 1 < self.policy.failures && !self.trial =>
            {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => State::Open {
                until: Instant::now() + self.policy.cooldown,
            },
        };
        match (before, *s) {
            (State::Open { .. }, State::Open { .. }) => Transition::Unchanged,
            (_, State::Open { .. }) => Transition::Opened(self.policy.cooldown),
            (State::Closed { .. }, State::Closed { .. }) => Transition::Unchanged,
            (_, State::Closed { .. }) => Transition::Closed,
            _ => Transition::Unchanged,
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        // A cancelled trial proves nothing: let the next caller try.
        if self.trial && !self.reported {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if *s == (State::HalfOpen { trial: true }) {
                *s = State::HalfOpen { trial: false };
            }
        }
    }
}

/// Where a runtime's circuit state lives (chosen when the runtime is built).
pub(crate) enum CircuitSeam {
    /// In this process only.
    Local(Circuits),
    /// In the attached store, shared by the fleet.
    Fleet(FleetCircuits),
}

/// A call's admission, however the circuit is kept.
pub(crate) enum Admitted {
    Local(Admission),
    Fleet(FleetAdmission),
}

impl CircuitSeam {
    /// Admits a call, or fails fast with [`Error::CircuitOpen`]. `trial_for` is how long the call
    /// may run (its total timeout): a fleet trial's claim lasts that long.
    pub(crate) async fn admit(
        &self,
        endpoint: &'static Endpoint,
        policy: &CircuitPolicy,
        trial_for: Duration,
    ) -> Result<Admitted> {
        match self {
            CircuitSeam::Local(c) => c.admit(endpoint, policy).map(Admitted::Local),
            CircuitSeam::Fleet(f) => f.admit(endpoint, policy, trial_for).await,
        }
    }

    /// The circuit's state name: `closed`, `open` or `half-open` (for a fleet circuit, as this
    /// runtime last saw it in the store).
    pub(crate) fn state(&self, endpoint: &Endpoint) -> &'static str {
        match self {
            CircuitSeam::Local(c) => c.state(endpoint),
            CircuitSeam::Fleet(f) => f.state(endpoint),
        }
    }
}

impl Admitted {
    /// Reports the call's outcome; waits for a fleet step at most until `deadline` (the step
    /// finishes behind the call past it).
    pub(crate) async fn report<T>(self, outcome: &Result<T>, deadline: Instant) -> Transition {
        // A call that never reached the upstream proves nothing about it: unreported, a trial
        // hands over to the next caller (dropping the admission), and the count stays as it was.
        if never_sent(outcome) {
            return Transition::Unchanged;
        }
        match self {
            Admitted::Local(a) => a.report(outcome),
            Admitted::Fleet(a) => a.report(is_failure(outcome), deadline).await,
        }
    }
}

/// Circuits kept in a shared store (see the module docs).
pub(crate) struct FleetCircuits {
    inner: Arc<FleetInner>,
}

struct FleetInner {
    store: Arc<dyn Store>,
    layout: KeyLayout,
    store_timeout: Duration,
    /// Used while the store is unreachable.
    local: Circuits,
    /// The state each stitch's circuit had in the store at this runtime's last step.
    seen: Mutex<HashMap<usize, &'static str>>,
    /// The runtime's store breaker: while it is open, the in-process circuit decides.
    breaker: Arc<StoreBreaker>,
}

/// A call admitted by a fleet circuit.
pub(crate) struct FleetAdmission {
    inner: Arc<FleetInner>,
    endpoint: &'static Endpoint,
    key: String,
    step: CircuitStep,
    trial: bool,
    /// Whether a success must be written (the circuit had failures, or was half-open, when the
    /// call was admitted); a success on a clean circuit changes nothing and costs no round trip.
    dirty: bool,
    reported: bool,
}

impl FleetCircuits {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        layout: KeyLayout,
        breaker: Arc<StoreBreaker>,
        store_timeout: Duration,
    ) -> Self {
        FleetCircuits {
            inner: Arc::new(FleetInner {
                store,
                layout,
                store_timeout,
                local: Circuits::default(),
                seen: Mutex::default(),
                breaker,
            }),
        }
    }

    async fn admit(
        &self,
        endpoint: &'static Endpoint,
        policy: &CircuitPolicy,
        trial_for: Duration,
    ) -> Result<Admitted> {
        let inner = &self.inner;
        // Declared `local`: this process's circuit, whatever the store.
        if policy.local {
            return inner.local.admit(endpoint, policy).map(Admitted::Local);
        }
        if !inner.breaker.may_ask() {
            meter::degraded(endpoint, "circuit_local");
            return inner.local.admit(endpoint, policy).map(Admitted::Local);
        }
        let key = inner.layout.circuit(endpoint.name);
        let step = CircuitStep {
            event: CircuitEvent::Admit,
            failures: policy.failures.max(1),
            cooldown_us: policy
                .cooldown
                .min(Duration::from_secs(365 * 24 * 3600))
                .as_micros() as u64,
            // The call's whole budget plus its report; a day at most (a `Duration::MAX`
            // timeout must still give a number the store can add to its clock).
            trial_ttl_us: trial_for
                .saturating_add(inner.store_timeout * 2)
                .min(Duration::from_secs(24 * 3600))
                .as_micros() as u64,
            id: OpId::random(),
        };
        let reply = match inner.step(&key, step).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(stitch = endpoint.name, error = %e, "fleet circuit unreachable; admitting with the in-process circuit");
                meter::store_error(endpoint, e.operation, "circuit_local");
                return inner.local.admit(endpoint, policy).map(Admitted::Local);
            }
        };
        inner.saw(endpoint, reply.state);
        let (trial, dirty) = match reply.state {
            CircuitState::Closed { failures } => (false, failures > 0),
            CircuitState::Trial => (true, true),
            CircuitState::Open { retry_in_us } => {
                return Err(Error::CircuitOpen {
                    stitch: endpoint.name,
                    retry_in: Duration::from_micros(retry_in_us),
                })
            }
            // Like the in-process circuit: the trial may resolve any moment (its claim's end is
            // only the bound for a trial whose process died).
            CircuitState::Busy { .. } => {
                return Err(Error::CircuitOpen {
                    stitch: endpoint.name,
                    retry_in: Duration::ZERO,
                })
            }
        };
        tracing::Span::current().record("circuit", if trial { "half-open" } else { "closed" });
        Ok(Admitted::Fleet(FleetAdmission {
            inner: inner.clone(),
            endpoint,
            key,
            step,
            trial,
            dirty,
            reported: false,
        }))
    }

    fn state(&self, endpoint: &Endpoint) -> &'static str {
        if self.inner.breaker.is_open() || endpoint.circuit.is_some_and(|c| c.local) {
            return self.inner.local.state(endpoint);
        }
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&endpoint.id())
            .copied()
            .unwrap_or("closed")
    }
}

impl FleetInner {
    fn saw(&self, endpoint: &Endpoint, state: CircuitState) {
        let name = match state {
            CircuitState::Closed { .. } => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::Trial | CircuitState::Busy { .. } => "half-open",
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(endpoint.id(), name);
    }

    /// One step, bounded by the store timeout and retried once when its outcome is unknown (the
    /// step's id makes a retried failure count once; the other events are idempotent). Its outcome
    /// opens or closes the runtime's store breaker.
    async fn step(
        &self,
        key: &str,
        step: CircuitStep,
    ) -> std::result::Result<CircuitReply, StoreError> {
        let mut last = None;
        for _ in 0..2 {
            let e = match tokio::time::timeout(self.store_timeout, self.store.circuit(key, step))
                .await
            {
                Ok(Ok(reply)) => {
                    self.breaker.succeeded();
                    return Ok(reply);
                }
                Ok(Err(e)) => e,
                Err(_) => StoreError::timeout("circuit", self.store_timeout),
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
        // Every concern of the runtime skips the store for a while (the runtime's breaker).
        self.breaker.failed();
        Err(last.unwrap_or_else(|| StoreError::timeout("circuit", self.store_timeout)))
    }
}

impl FleetAdmission {
    async fn report(mut self, failed: bool, deadline: Instant) -> Transition {
        self.reported = true;
        if !failed && !self.dirty {
            return Transition::Unchanged;
        }
        let step = CircuitStep {
            event: if failed {
                CircuitEvent::Failure
            } else {
                CircuitEvent::Success
            },
            ..self.step
        };
        let (inner, key, endpoint) = (
            self.inner.clone(),
            std::mem::take(&mut self.key),
            self.endpoint,
        );
        let work = async move {
            match inner.step(&key, step).await {
                Ok(reply) => {
                    inner.saw(endpoint, reply.state);
                    match (reply.before, reply.state) {
                        (CircuitPhase::Open, CircuitState::Open { .. }) => Transition::Unchanged,
                        (_, CircuitState::Open { retry_in_us }) => {
                            Transition::Opened(Duration::from_micros(retry_in_us))
                        }
                        (CircuitPhase::Closed, _) => Transition::Unchanged,
                        (_, CircuitState::Closed { .. }) => Transition::Closed,
                        _ => Transition::Unchanged,
                    }
                }
                Err(e) => {
                    tracing::warn!(stitch = endpoint.name, error = %e, "could not report to the fleet circuit");
                    meter::store_error(endpoint, e.operation, "circuit_not_shared");
                    Transition::Unchanged
                }
            }
        };
        // The caller waits while its own budget lasts (so the fleet usually knows by the time the
        // call returns); past it the step finishes on its own task.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let task = handle.spawn(work);
                tokio::time::timeout_at(deadline, task)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or(Transition::Unchanged)
            }
            Err(_) => work.await,
        }
    }
}

impl Drop for FleetAdmission {
    fn drop(&mut self) {
        // A cancelled trial proves nothing: hand the trial to the next caller of the fleet at
        // once instead of after its claim runs out.
        if self.trial && !self.reported {
            let (inner, key) = (self.inner.clone(), std::mem::take(&mut self.key));
            let step = CircuitStep {
                event: CircuitEvent::Abandon,
                ..self.step
            };
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = inner.step(&key, step).await;
                });
            }
        }
    }
}
