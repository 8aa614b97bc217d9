//! Request coalescing: concurrent calls with the same key share one upstream request.
//!
//! The request runs in its own task, owned by no caller: dropping the first caller (or any) does
//! not cancel it while others wait, so nobody has to take over and no second request is sent. Every
//! caller is a waiter; when the last waiter leaves before the outcome, the task is aborted and the
//! entry removed. The outcome (value or error, after retries) goes to every waiter present when it
//! is published; the entry is removed at that moment, after the value was stored, so a caller
//! arriving later finds the cache instead.
//!
//! Invariant: the in-flight map never holds an entry without a live task or a waiter.

use crate::cache::key::CacheKey;
use crate::cache::local::Value;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

type Outcome = Option<Result<Value>>;

struct Flight {
    id: u64,
    /// Set by an exact invalidation of the key while the request runs: the flight must not
    /// store what it fetched (the invalidation wins; its value still reaches its waiters).
    stale: Arc<AtomicBool>,
    outcome: watch::Receiver<Outcome>,
    waiters: usize,
    task: tokio::task::AbortHandle,
}

/// The in-flight requests of one runtime.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<CacheKey, Flight>>,
    next_id: AtomicU64,
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
                    flight.task.abort();
                    map.remove(&self.key);
                }
            }
        }
    }
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Flight>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the flight of `key`, if one runs, as invalidated: it will not store its value.
    pub(crate) fn invalidate(&self, key: &CacheKey) {
        if let Some(flight) = self.lock().get(key) {
            flight.stale.store(true, Ordering::SeqCst);
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
        W: FnOnce(Arc<AtomicBool>) -> F,
        F: Future<Output = Result<Value>> + Send + 'static,
    {
        let (mut rx, waiter, role) = {
            let mut map = self.lock();
            if !map.contains_key(&key) {
                if let Some(value) = stored() {
                    return (Ok(value), Role::Stored);
                }
            }
            match map.get_mut(&key) {
                Some(flight) => {
                    flight.waiters += 1;
                    let waiter = Waiter {
                        flights: self.clone(),
                        key,
                        id: flight.id,
                    };
                    (flight.outcome.clone(), waiter, Role::Follower)
                }
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = watch::channel(None);
                    let flights = self.clone();
                    let stale = Arc::new(AtomicBool::new(false));
                    let fut = work(stale.clone());
                    let task = tokio::spawn(async move {
                        let outcome = fut.await;
                        let mut map = flights.lock();
                        if map.get(&key).is_some_and(|f| f.id == id) {
                            map.remove(&key);
                        }
                        // Published under the lock: a caller either joined before (and sees this)
                        // or arrives after the entry is gone (and finds the stored value).
                        let _ = tx.send(Some(outcome));
                    });
                    map.insert(
                        key,
                        Flight {
                            id,
                            stale,
                            outcome: rx.clone(),
                            waiters: 1,
                            task: task.abort_handle(),
                        },
                    );
                    let waiter = Waiter {
                        flights: self.clone(),
                        key,
                        id,
                    };
                    (rx, waiter, Role::Leader)
                }
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(guard) => guard.clone().unwrap_or_else(|| Err(aborted())),
            // The task ended without publishing (it panicked): report, do not hang.
            Err(_) => Err(aborted()),
        };
        drop(waiter);
        (outcome, role)
    }
}

fn aborted() -> Error {
    Error::Config {
        stitch: "coalescing",
        reason: "the shared upstream request ended without an outcome (its task panicked)".into(),
    }
}
