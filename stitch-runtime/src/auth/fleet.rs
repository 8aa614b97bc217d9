//! One login, one token per fleet: a credential shared through the store is filled by one
//! process while the others wait for it, with the store's fill verbs (`fill_claim`,
//! `fill_renew`, `fill_complete`, `fill_abandon`, `fill_invalidate_if` or `fill_invalidate`).
//!
//! - `claim` → **hit**: open the sealed value and use it. **Leader**: fetch (log in, request a
//!   token), renewing the lease every third of its TTL while the fetch runs — a login slower than
//!   the lease is still one login — then seal and `complete` (fenced by the claim's generation),
//!   which notifies the waiters on the fleet's event channel. **Busy**: wait for that
//!   notification, or at the latest for the end of the holder's lease (a lost message or a dead
//!   holder only delays), then claim again.
//! - A re-login after a rejection names the stored bytes that failed (`stale`). A stored value
//!   that differs is the fleet's newer credential: used, nothing fetched. When it is still the
//!   failed one, exactly one process invalidates it: `fill_invalidate_if` (compare and
//!   invalidate) removes it only while it is still those bytes, so a second process's late
//!   invalidation finds them gone and removes nothing; with a store lacking that verb, the one
//!   process that creates the stale marker for those bytes (`set_if_absent`) invalidates them.
//!   An unconditional late invalidation would remove the first one's lease mid-login and fence
//!   its completion (a second login).
//! - A leader dropped mid-fetch abandons its lease (a waiter takes over at once).
//! - A store that cannot be asked is a [`Failure::Store`]: the strategy applies its outage policy.
//!
//! Invariant: nothing is written to the store unsealed unless the runtime was told to store
//! credentials in plaintext; the seal binds a value to its store key.

use super::strategy::AuthContext;
use crate::error::Error;
use crate::store::keys::{companion, FillKeySet};
use crate::store::{Cas, Claimed, Fill, FillClaim, Notify, OpId, Store, StoreFuture, Verb};
use bytes::Bytes;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// The fill lease of a login or token request unless the strategy sets another: short, so a
/// crashed leader is replaced quickly; renewed while the fetch runs, so a slow one is not.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// Wakes every waiter (a gap in the subscription: messages may have been lost).
const WAKE_ALL: &[u8] = b"*";

/// The shared credential of one account (a session) or client (a token), on this runtime.
pub(crate) struct Account {
    keys: FillKeySet,
    channel: String,
    message: Bytes,
    store: Arc<dyn Store>,
}

impl Account {
    /// `account`'s session, when the runtime shares credentials through its store.
    pub(crate) fn session(cx: &AuthContext, account: &str) -> Option<Account> {
        Self::of(cx, |l| l.session_fill(account))
    }

    /// Token `name`, when the runtime shares credentials through its store.
    pub(crate) fn token(cx: &AuthContext, name: &str) -> Option<Account> {
        Self::of(cx, |l| l.token_fill(name))
    }

    fn of(
        cx: &AuthContext,
        keys: impl FnOnce(&crate::store::keys::KeyLayout) -> FillKeySet,
    ) -> Option<Account> {
        let store = cx.store.as_ref()?;
        let verbs = store.capabilities();
        // A store without the fill verbs (a get/set/delete driver) keeps credentials per process.
        if !cx.sealing.is_set() || !verbs.contains(Verb::Fill) || !verbs.contains(Verb::SetIfAbsent)
        {
            return None;
        }
        let keys = keys(&cx.layout);
        let message = Bytes::from(format!("auth|{}", keys.keys().value));
        Some(Account {
            keys,
            channel: cx.layout.events(),
            message,
            store: store.clone(),
        })
    }

    /// `plaintext` sealed for this account's stored value (bound to its key); `None`, logged,
    /// when it cannot be.
    pub(crate) fn seal(&self, cx: &AuthContext, plaintext: &[u8]) -> Option<Bytes> {
        match cx.sealing.seal(self.keys.keys().value, plaintext) {
            Ok(sealed) => Some(Bytes::from(sealed)),
            Err(e) => {
                tracing::warn!(error = %e, "a renewed credential could not be sealed; kept in this process only");
                None
            }
        }
    }

    /// Replaces the stored credential with `sealed` (for `ttl`) if it is still `expected`, the
    /// bytes this process's credential came from: a renewal never overwrites a credential another
    /// process stored since. Whether it replaced it; `Err` (the reason, for the log) when the
    /// store cannot be asked or cannot compare and set.
    pub(crate) async fn replace(
        &self,
        cx: &AuthContext,
        expected: &Bytes,
        sealed: Bytes,
        ttl: Duration,
    ) -> Result<bool, String> {
        if !self.store.capabilities().contains(Verb::CompareAndSet) {
            return Err("the store does not implement `compare_and_set`".into());
        }
        let key = self.keys.keys().value;
        let swapped = ask(cx, "compare_and_set", || {
            self.store
                .compare_and_set(key, Some(&expected[..]), sealed, ttl, OpId::random())
        })
        .await;
        match swapped {
            Ok(Cas::Swapped) => Ok(true),
            Ok(Cas::Conflict { .. }) => Ok(false),
            Err(Failure::Store(why)) => Err(why),
            Err(Failure::Upstream(e)) => Err(e.to_string()),
        }
    }

    fn notify(&self) -> Notify<'_> {
        Notify {
            channel: &self.channel,
            message: self.message.clone(),
        }
    }
}

/// A credential from the fleet: its plaintext, the stored (sealed) bytes it came from, and how
/// much longer it lives in the store.
pub(crate) struct Found {
    pub(crate) plaintext: Vec<u8>,
    pub(crate) stored: Bytes,
    pub(crate) ttl: Duration,
}

/// Why no credential came from the fleet.
pub(crate) enum Failure {
    /// The fetch (login, token request) failed: the caller's error.
    Upstream(Error),
    /// The store could not be asked (its message, for the log).
    Store(String),
}

/// Counts a degraded credential decision (`stitch_auth_degraded_total`).
pub(crate) fn degraded(strategy: &'static str, decision: &'static str) {
    metrics::counter!("stitch_auth_degraded_total", "strategy" => strategy, "decision" => decision)
        .increment(1);
}

async fn ask<'a, T>(
    cx: &AuthContext,
    operation: &'static str,
    op: impl FnOnce() -> StoreFuture<'a, T>,
) -> Result<T, Failure> {
    match cx.breaker.run(cx.store_timeout, operation, op).await {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(Failure::Store(e.to_string())),
        None => Err(Failure::Store(
            "it failed moments ago (the runtime's store breaker is open)".into(),
        )),
    }
}

/// The fleet's credential for `account`: the stored one unless it is `stale` (the bytes a
/// rejected credential came from), else the one `fetch` gets as the fleet's single leader
/// (`fetch` returns the plaintext and how long it lives). `what` names it in logs.
pub(crate) async fn obtain<F, Fut>(
    cx: &AuthContext,
    account: &Account,
    stale: Option<&Bytes>,
    lease: Duration,
    what: &'static str,
    fetch: F,
) -> Result<Found, Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = crate::Result<(Vec<u8>, Duration)>>,
{
    let keys = account.keys.keys();
    let holder = OpId::random();
    let lease_us = lease.as_micros().max(1) as u64;
    // Subscribed before the first claim: a completion after it is never missed.
    let mut events = cx.events.receiver(cx, &account.channel).await;
    // A stored value that did not open counts as stale too (replaced by the next login).
    let mut unopenable: Option<Bytes> = None;
    loop {
        let claim = FillClaim {
            holder,
            lease_ttl_us: lease_us,
        };
        match ask(cx, "fill_claim", || account.store.fill_claim(keys, claim)).await? {
            Claimed::Hit { value, ttl_us } => {
                let is_stale = stale.is_some_and(|s| *s == value)
                    || unopenable.as_ref().is_some_and(|u| *u == value);
                if !is_stale {
                    match cx.sealing.open(keys.value, &value) {
                        Ok(plaintext) => {
                            return Ok(Found {
                                plaintext,
                                stored: value,
                                ttl: Duration::from_micros(ttl_us),
                            })
                        }
                        Err(e) => {
                            // Never used: another key, moved from another store key, altered.
                            tracing::warn!(credential = what, error = %e, "a stored credential does not open; replacing it");
                            degraded("fleet", "unopenable_credential");
                            unopenable = Some(value.clone());
                        }
                    }
                }
                // The failed credential is still the stored one: one process invalidates it. With
                // compare-and-invalidate, only while it is still that one (a credential another
                // process stored since is kept, and of several processes that saw it fail exactly
                // one invalidates); then claim again either way.
                if account
                    .store
                    .capabilities()
                    .contains(Verb::FillInvalidateIf)
                {
                    ask(cx, "fill_invalidate_if", || {
                        account
                            .store
                            .fill_invalidate_if(keys, &value, Some(account.notify()))
                    })
                    .await?;
                    continue;
                }
                // Without it, the process that creates the stale marker of these bytes does.
                let marker = companion(keys.value, &format!("stale:{}", digest(&value)));
                let first = ask(cx, "set_if_absent", || {
                    account.store.set_if_absent(
                        &marker,
                        Bytes::from_static(b"1"),
                        lease,
                        OpId::random(),
                    )
                })
                .await?;
                if first {
                    ask(cx, "fill_invalidate", || {
                        account.store.fill_invalidate(keys, Some(account.notify()))
                    })
                    .await?;
                    continue;
                }
                // Another process is replacing it: its invalidation or completion wakes us.
                wait(&mut events, &account.message, lease / 3).await;
            }
            Claimed::Busy { lease_ends_in_us } => {
                // Jitter: the waiters of a dead holder do not all claim at the same instant.
                let jitter = Duration::from_micros(u64::from(holder.as_u128() as u16) % 5_000);
                wait(
                    &mut events,
                    &account.message,
                    Duration::from_micros(lease_ends_in_us) + jitter,
                )
                .await;
            }
            Claimed::Leader { generation } => {
                return lead(cx, account, holder, generation, lease, what, &fetch).await;
            }
        }
    }
}

/// The leader's part: fetch while renewing the lease, seal, complete.
async fn lead<F, Fut>(
    cx: &AuthContext,
    account: &Account,
    holder: OpId,
    generation: u64,
    lease: Duration,
    what: &'static str,
    fetch: &F,
) -> Result<Found, Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = crate::Result<(Vec<u8>, Duration)>>,
{
    let keys = account.keys.keys();
    let mut guard = Abandon {
        store: account.store.clone(),
        keys: account.keys.clone(),
        holder,
        channel: account.channel.clone(),
        message: account.message.clone(),
        armed: true,
    };
    let lease_us = lease.as_micros().max(1) as u64;
    let renew = async {
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            let renewed = cx
                .breaker
                .run(cx.store_timeout, "fill_renew", || {
                    account.store.fill_renew(keys, holder, lease_us)
                })
                .await;
            if let Some(Ok(false)) = renewed {
                // Taken over or invalidated: the completion will be fenced; the fetch goes on
                // (its credential is still good for this process).
                tracing::warn!(
                    credential = what,
                    "the fill lease was lost during the fetch"
                );
                return std::future::pending::<std::convert::Infallible>().await;
            }
        }
    };
    let fetched = tokio::select! {
        fetched = fetch() => fetched,
        never = renew => match never {},
    };
    let (plaintext, ttl) = match fetched {
        Ok(v) => v,
        Err(e) => {
            guard.armed = false;
            // Waiters take over at once (each tries the fetch itself in turn).
            let _ = ask(cx, "fill_abandon", || {
                account
                    .store
                    .fill_abandon(keys, holder, Some(account.notify()))
            })
            .await;
            return Err(Failure::Upstream(e));
        }
    };
    guard.armed = false;
    let sealed = match cx.sealing.seal(keys.value, &plaintext) {
        Ok(sealed) => Bytes::from(sealed),
        Err(e) => {
            let _ = ask(cx, "fill_abandon", || {
                account
                    .store
                    .fill_abandon(keys, holder, Some(account.notify()))
            })
            .await;
            tracing::warn!(credential = what, error = %e, "the credential could not be sealed; kept in this process only");
            return Ok(Found {
                plaintext,
                stored: Bytes::new(),
                ttl,
            });
        }
    };
    let fill = Fill {
        holder,
        generation,
        value: sealed.clone(),
        ttl,
        notify: Some(account.notify()),
        value_message: None,
    };
    match ask(cx, "fill_complete", || {
        account.store.fill_complete(keys, fill)
    })
    .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                credential = what,
                "the credential was invalidated during the fetch: used by this process, not stored"
            );
            degraded("fleet", "fill_fenced");
        }
        Err(Failure::Store(why)) => {
            tracing::warn!(credential = what, reason = %why, "the credential could not be stored for the fleet");
            degraded("fleet", "fill_not_stored");
        }
        Err(e) => return Err(e),
    }
    Ok(Found {
        plaintext,
        stored: sealed,
        ttl,
    })
}

/// Waits for `message` (or a gap) on the fleet channel, at most `at_most`.
async fn wait(events: &mut Option<broadcast::Receiver<Bytes>>, message: &[u8], at_most: Duration) {
    let Some(rx) = events else {
        tokio::time::sleep(at_most).await;
        return;
    };
    let until = tokio::time::Instant::now() + at_most;
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Err(_) => return,
            Ok(Ok(m)) if announces(&m, message) || m == WAKE_ALL => return,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => return,
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                *events = None;
                tokio::time::sleep_until(until).await;
                return;
            }
        }
    }
}

/// Whether `m` is this account's message: as published, or as `fill_invalidate` publishes it
/// (followed by `|` and the generation it moved to).
fn announces(m: &[u8], message: &[u8]) -> bool {
    m.strip_prefix(message)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"|"))
}

fn digest(value: &[u8]) -> String {
    blake3::hash(value).to_hex()[..32].to_owned()
}

/// Gives the lease back if the leader is dropped mid-fetch (its caller cancelled), so a waiter
/// takes over at once rather than at the end of the lease.
struct Abandon {
    store: Arc<dyn Store>,
    keys: FillKeySet,
    holder: OpId,
    channel: String,
    message: Bytes,
    armed: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, keys, holder, channel, message) = (
            self.store.clone(),
            self.keys.clone(),
            self.holder,
            std::mem::take(&mut self.channel),
            self.message.clone(),
        );
        handle.spawn(async move {
            let notify = Notify {
                channel: &channel,
                message,
            };
            let abandon = store.fill_abandon(keys.keys(), holder, Some(notify));
            let _ = tokio::time::timeout(Duration::from_secs(2), abandon).await;
        });
    }
}

/// The fleet's fill notifications for one runtime: one subscription to the event channel, made
/// on first use and shared by every waiter of every strategy. A subscription that could not be
/// made (the store down) or that ended is made again by the next waiter; meanwhile waiters
/// re-claim when the lease they wait on ends.
#[derive(Default)]
pub(crate) struct Events {
    live: tokio::sync::Mutex<Option<Live>>,
}

struct Live {
    sender: Arc<broadcast::Sender<Bytes>>,
    /// Cleared by the forwarder when the subscription ends for good.
    alive: Arc<std::sync::atomic::AtomicBool>,
}

impl Events {
    /// A receiver of the channel's messages from now on; `None` when the store cannot
    /// subscribe now.
    async fn receiver(
        &self,
        cx: &AuthContext,
        channel: &str,
    ) -> Option<broadcast::Receiver<Bytes>> {
        use std::sync::atomic::Ordering;
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref().filter(|l| l.alive.load(Ordering::Acquire)) {
            return Some(l.sender.subscribe());
        }
        let store = cx.store.as_ref()?;
        if !store.capabilities().contains(Verb::Subscribe) {
            return None;
        }
        let subscription = match cx
            .breaker
            .run(cx.store_timeout, "subscribe", || store.subscribe(channel))
            .await
        {
            Some(Ok(s)) => s,
            _ => return None,
        };
        let sender = Arc::new(broadcast::channel(1024).0);
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        tokio::spawn(forward(
            subscription,
            Arc::downgrade(&sender),
            alive.clone(),
        ));
        let receiver = sender.subscribe();
        *live = Some(Live { sender, alive });
        Some(receiver)
    }
}

/// Forwards the subscription's messages to the runtime's waiters until the runtime is dropped
/// or the subscription ends.
async fn forward(
    mut subscription: crate::store::Subscription,
    sender: Weak<broadcast::Sender<Bytes>>,
    alive: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), subscription.next()).await;
        let Some(sender) = sender.upgrade() else {
            return;
        };
        match next {
            Err(_) => {}
            Ok(Some(crate::store::Event::Message(m))) => {
                let _ = sender.send(m);
            }
            Ok(Some(crate::store::Event::Gap)) => {
                let _ = sender.send(Bytes::from_static(WAKE_ALL));
            }
            // Ended for good: the next waiter subscribes again; the current ones are woken to
            // re-claim.
            Ok(None) => {
                alive.store(false, std::sync::atomic::Ordering::Release);
                let _ = sender.send(Bytes::from_static(WAKE_ALL));
                return;
            }
        }
    }
}
