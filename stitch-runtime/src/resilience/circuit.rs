//! The circuit breaker: after `failures` consecutive failed calls the circuit opens and calls fail
//! fast without touching the network; after `cooldown` it is half-open and admits exactly one
//! trial call (the others keep failing fast until it resolves); success closes it, failure opens
//! it again.
//!
//! What counts as a failure: a transport error, a timeout, a 5xx or 429 (the upstream is unwell).
//! A 4xx or a decode error is the caller's or the contract's problem, not the upstream's health.
//! State is per stitch and per runtime; with a shared store attached, opening is fleet-wide: the
//! runtime that opens the circuit writes a key that expires with the cooldown, and every runtime on
//! the store fails fast while it exists (a success deletes it). Failure counting and the
//! half-open trial stay per process until the store offers atomic verbs.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A stitch's `circuit(failures = N, cooldown = "...")` declaration.
#[derive(Debug, Clone, Copy)]
pub struct CircuitPolicy {
    pub(crate) failures: u32,
    pub(crate) cooldown: Duration,
}

#[doc(hidden)]
impl CircuitPolicy {
    pub const fn new(failures: u32, cooldown: Duration) -> Self {
        CircuitPolicy { failures, cooldown }
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

/// The shared-store key that tells every runtime on the store the circuit is open.
pub(crate) fn store_key(stitch: &str) -> String {
    format!("stitch:circuit:{stitch}")
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
