//! The one call pipeline every stitch runs, top to bottom:
//!
//! 1. derive the cache key (cached stitches only) — [`crate::cache::key`]
//! 2. in-process tier, then the shared store — hit: done, nothing sent
//! 3. join or lead the in-flight request for the key — [`crate::cache::coalesce`]
//! 4. resolve the request ([`crate::http::request`]), send it within the timeout and check the
//!    status ([`crate::http::send`])
//! 5. decode, then store (only 2xx responses that decoded)
//!
//! Throttle and auth slot in around step 4 (once per attempt); the generated code never changes.
//!
//! Every call has a total budget (the stitch's `timeout`, else the runtime's, 30 s by default):
//! the shared-store read of step 2, throttle waits, backoff and every attempt count against it, and
//! each store operation is also bounded by the store timeout and skipped while the runtime's store
//! breaker is open ([`crate::store::breaker`]). The store write of step 5 runs behind the call, so
//! no caller, leader or coalesced, waits for it.

use crate::auth::{AuthRequest, AuthResponse, Credential};
use crate::cache::coalesce::{self, Role};
use crate::cache::fleet::Claim;
use crate::cache::key::{self, CacheKey};
use crate::cache::local::{StitchCache, Value};
use crate::cache::record;
use crate::cache::{self, CachePolicy, Decoded};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result, TimeoutBound};
use crate::http::redact;
use crate::http::request::{Prepared, RequestParts};
use crate::http::response::{Decode, RawResponse};
use crate::http::send::send;
use crate::meter::{self, CacheOutcome};
use crate::resilience::circuit::Transition;
use crate::runtime::{ClientCore, Credentials, Runtime};
use crate::throttle::limiter::Acquired;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{field, Instrument};

fn span(endpoint: &Endpoint) -> tracing::Span {
    tracing::info_span!(
        "stitch",
        stitch = endpoint.name,
        method = endpoint.method.as_str(),
        // OpenTelemetry's HTTP client names, so OTel exporters show them without mapping. Never
        // the full URL: its query may carry a secret.
        http.request.method = endpoint.method.as_str(),
        // A template may fix a credential (`?api_key=...`, userinfo): shown redacted.
        url.template = &*redact::template(endpoint.template),
        server.address = field::Empty,
        server.port = field::Empty,
        http.response.status_code = field::Empty,
        error.type = field::Empty,
        cache = field::Empty,
        throttle_wait_ms = field::Empty,
        attempts = field::Empty,
        backoff_ms = field::Empty,
        circuit = field::Empty,
        status = field::Empty,
        elapsed_ms = field::Empty,
    )
}

/// Runs one call of an uncached stitch.
///
/// The request is resolved first, into the one copy of it that every step below borrows
/// (`prepared`): an `async` layer that took it by value would keep its own copy in the call's
/// future for the whole call.
#[doc(hidden)]
pub async fn call<D: Decode>(client: &ClientCore, request: RequestParts) -> Result<D::Output> {
    let endpoint = request.endpoint;
    // Inside `stitch::invalidate` nothing is sent, traced or counted.
    if cache::invalidating() {
        return Err(invalidation_only(endpoint));
    }
    let runtime = client.runtime();
    let span = span(endpoint);
    // No subscriber wants the span: skip its bookkeeping on the hot path.
    let traced = !span.is_disabled();
    if traced {
        span.record("cache", "bypass");
    }
    let started = Instant::now();
    let budget = Budget::start(runtime, endpoint);
    let request = with_principal(client, request);
    let (mut prepared, mut failed) = owned(resolve(runtime, request, &span));
    let mut run = std::pin::pin!(async {
        if let Some(error) = failed.take() {
            return Err(*error);
        }
        let mut raw = exchange(runtime, endpoint, &mut prepared, budget).await?;
        let sent = std::mem::take(&mut raw.sent);
        D::decode(endpoint, raw).map_err(|e| sent.redact(e))
    });
    // Polled inside the span, as `Instrument::instrument` does, but pinned where it was
    // built: `instrument` takes the future by value, and moving it into its wrapper and then
    // into this future copies all of it, twice (callgrind, `benches/examples/probe.rs`).
    let outcome = std::future::poll_fn(|cx| {
        let _entered = span.enter();
        std::future::Future::poll(run.as_mut(), cx)
    })
    .await;
    let elapsed = started.elapsed();
    if traced {
        span.record("elapsed_ms", elapsed.as_secs_f64() * 1e3);
        record_error(&span, &outcome);
    }
    meter::call(endpoint, CacheOutcome::Bypass, &outcome, Some(elapsed));
    outcome
}

/// `request` as the calling client sends it: for its principal (auth strategies holding one
/// credential per principal).
fn with_principal(client: &ClientCore, mut request: RequestParts) -> RequestParts {
    request.principal = client.principal().map(|p| p.id.clone());
    request
}

/// A resolved request as the future that sends it owns it: the request (taken by its last
/// attempt), or why it could not be resolved (boxed: the common future does not reserve room
/// for an error).
fn owned(resolved: Result<Prepared>) -> (Option<Prepared>, Option<Box<Error>>) {
    match resolved {
        Ok(prepared) => (Some(prepared), None),
        Err(error) => (None, Some(Box::new(error))),
    }
}

/// The span's `error.type` (OpenTelemetry's name) of a failed call.
fn record_error<T>(span: &tracing::Span, outcome: &Result<T>) {
    if let Err(error) = outcome {
        span.record("error.type", &*error.error_type());
    }
}

/// Runs one call of a cached stitch: read-through cache and coalescing around [`call`]'s steps.
///
/// `D` only names the output ([`Decoded`] has no bounds): the descriptor's policy decodes and
/// clones values, and everything the cache needs of the output was required once where the policy
/// was built (`__private::cached`), so an unmet bound is not reported again here.
#[doc(hidden)]
pub async fn call_cached<D: Decoded>(
    client: &ClientCore,
    mut request: RequestParts,
) -> Result<D::Output> {
    request.principal = client.principal().map(|p| p.id.clone());
    let endpoint = request.endpoint;
    let policy = match &endpoint.cache {
        Some(p) if !endpoint.sensitive => p,
        // The macros emit this call only for a cached, non-sensitive stitch.
        _ => {
            return Err(Error::Config {
                stitch: endpoint.name,
                reason: "internal: a cached call of a stitch without a cache policy".into(),
            })
        }
    };
    let runtime = client.runtime();
    // No path skips the app-scope refusal (free stitches run on an unchecked global client).
    runtime.check_app_scope(endpoint)?;
    let auth = match (runtime.credentials_for(endpoint)?, runtime.provider()) {
        _ if policy.scope != cache::Scope::Principal => None,
        (Credentials::Strategy(strategy), _) => Some(strategy.principal(runtime.principal_key())),
        // Known after the first call (one read lock); deriving it asks the provider, boxed so
        // the common future stays small.
        (Credentials::Provider(_), Some(provider)) => Some(match provider.known() {
            Some(digest) => digest,
            None => Box::pin(provider.derive()).await?,
        }),
        _ => None,
    };
    // The key, and the generations it was derived at (everything else it depends on is fixed
    // for the call).
    let derive = |local: &StitchCache| {
        let static_digest =
            local.static_digest(|| key::static_digest(endpoint, policy, runtime.key_context()));
        let generations = (runtime.local().generation(), local.generation());
        let key = key::derive(
            &static_digest,
            policy,
            &request,
            runtime.key_context(),
            client.principal(),
            auth.as_ref(),
            generations,
        );
        (key, generations)
    };
    // The hit path: no reference count, no span bookkeeping unless a subscriber wants it.
    let mut peeked_key = None;
    if !cache::invalidating() {
        let peeked = runtime.local().peek(endpoint, |local| {
            let (key, generations) = derive(local);
            let value = local.get(&key).and_then(|v| policy.values.typed(&v));
            (key, generations, value)
        });
        match peeked {
            Some((_, _, Some(value))) => {
                let span = span(endpoint);
                if !span.is_disabled() {
                    span.record("cache", "hit");
                }
                meter::hit(endpoint);
                return Ok(value);
            }
            Some((key, generations, None)) => peeked_key = Some((key, generations)),
            None => {}
        }
    }
    let local = runtime.local().stitch(endpoint, policy);
    // Started before any store round trip: they count against the call's total.
    let budget = Budget::start(runtime, endpoint);
    let tier = match (runtime.fleet(), runtime.store()) {
        (Some(fleet), _) => {
            // The fleet's generations enter the key: read them (once, and after an event gap)
            // before deriving it. Until they are known the shared tier is not used. (The
            // stitch's fleet scope is its static digest: made here if no key was derived yet.)
            local.static_digest(|| key::static_digest(endpoint, policy, runtime.key_context()));
            if fleet.sync(&local, budget.store_limit(runtime)).await {
                Tier::Fleet(fleet.clone())
            } else {
                meter::degraded(endpoint, "fleet_cache_local");
                Tier::Local
            }
        }
        (None, Some(_)) => Tier::Shared,
        (None, None) => Tier::Local,
    };
    // Derived again only when a generation moved since the peek (the fleet's sync, or a bump
    // meanwhile): each derivation is a keyed hash of the whole request.
    let generations = (runtime.local().generation(), local.generation());
    // Whether the peek already looked `key` up in this stitch's in-process tier.
    let (key, looked) = match peeked_key {
        Some((key, at)) if at == generations => (key, true),
        _ => (derive(&local).0, false),
    };
    if cache::invalidating() {
        // Boxed: an invalidation's store round trip, held inline, would grow every call's future.
        Box::pin(invalidate_entry(runtime, endpoint, key, &local, &tier)).await;
        return Err(invalidation_only(endpoint));
    }

    // The span bookkeeping is inline here and in `call` rather than in a shared async helper: one
    // more async layer moves the whole call future (measured: ~4 K instructions per call).
    let span = span(endpoint);
    let started = (!span.is_disabled()).then(Instant::now);
    let mut run = std::pin::pin!(read_through::<D>(
        runtime, request, key, looked, local, policy, budget, tier
    ));
    // Polled inside the span, as `Instrument::instrument` does, but pinned where it was built
    // (as in `call`): `instrument` takes the future by value, and moving it into its wrapper and
    // then into this future copies all of it.
    let outcome = std::future::poll_fn(|cx| {
        let _entered = span.enter();
        std::future::Future::poll(run.as_mut(), cx)
    })
    .await;
    if let Some(started) = started {
        span.record("elapsed_ms", started.elapsed().as_secs_f64() * 1e3);
    }
    outcome
}

/// Where a cached call may look beyond its in-process tier.
enum Tier {
    /// Nowhere: no store, or the fleet's generations are not known right now.
    Local,
    /// A store with plain `get`/`set`: read, then fetch and write behind the call.
    Shared,
    /// A store with the fleet verbs: one claim per in-process flight (`cache/fleet.rs`).
    Fleet(Arc<crate::cache::fleet::FleetCache>),
}

/// The work of `stitch::invalidate` on one entry: the in-process tier, a flight here, and the
/// shared tier; records whether the entry existed.
async fn invalidate_entry(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    key: CacheKey,
    local: &StitchCache,
    tier: &Tier,
) {
    let mut existed = local.remove(&key);
    // A request for this key in flight here must not store what it fetched.
    runtime.flights().invalidate(&key);
    match tier {
        Tier::Fleet(fleet) => match fleet.invalidate(&key).await {
            Ok(found) => existed |= found,
            Err(e) => invalidation_skipped(endpoint, e),
        },
        Tier::Shared => {
            if let Some(store) = runtime.store() {
                let store_key = key.store_key(runtime.layout());
                let deleted =
                    runtime
                        .store_breaker()
                        .run(runtime.store_timeout(), "delete", || {
                            store.delete(&store_key)
                        });
                match deleted.await {
                    Some(Ok(found)) => existed |= found,
                    Some(Err(e)) => invalidation_skipped(endpoint, Some(e)),
                    None => invalidation_skipped(endpoint, None),
                }
            }
        }
        Tier::Local => {
            if runtime.store().is_some() {
                invalidation_skipped(endpoint, None);
            }
        }
    }
    cache::mark_invalidated(existed);
}

fn invalidation_skipped(endpoint: &'static Endpoint, error: Option<crate::store::StoreError>) {
    match error {
        Some(e) => {
            tracing::warn!(stitch = endpoint.name, error = %e, "cache store delete failed; invalidated in this process only");
            meter::store_error(endpoint, "delete", "store_delete_skipped");
        }
        // The store failed moments ago (the runtime's store breaker), or the fleet's state is
        // not known: not asked.
        None => meter::degraded(endpoint, "store_delete_skipped"),
    }
}

/// `looked`: the caller's peek already missed `key` in-process. Under coalescing the flights look
/// again under their lock before a flight starts (`stored`), so a value landing since the peek is
/// still found; without, the in-process tier is asked here.
#[allow(clippy::too_many_arguments)]
async fn read_through<D: Decoded>(
    runtime: &Runtime,
    request: RequestParts,
    key: CacheKey,
    looked: bool,
    local: Arc<StitchCache>,
    policy: &'static CachePolicy,
    budget: Budget,
    tier: Tier,
) -> Result<D::Output> {
    let endpoint = request.endpoint;
    let span = tracing::Span::current();
    let coalesce = policy.coalesce && tokio::runtime::Handle::try_current().is_ok();
    if !(looked && coalesce) {
        if let Some(value) = local.get(&key).and_then(|v| policy.values.typed(&v)) {
            span.record("cache", "hit");
            meter::hit(endpoint);
            return Ok(value);
        }
    }
    let started = Instant::now();
    if matches!(tier, Tier::Shared) || (!coalesce && matches!(tier, Tier::Fleet(_))) {
        if let Some(value) = from_store::<D>(runtime, endpoint, key, &local, policy, budget).await {
            span.record("cache", "hit");
            meter::hit(endpoint);
            return Ok(value);
        }
    }
    let stored_local = local.clone();
    // How the in-process leader's fleet fill was served (hit, miss or coalesced elsewhere).
    let source = Arc::new(std::sync::atomic::AtomicU8::new(SOURCE_MISS));
    let (outcome, role) = match (coalesce, tier) {
        (true, Tier::Fleet(fleet)) => {
            let stored = || stored_local.get(&key);
            // The in-process leader claims inline (a hit, the common case, costs no task and no
            // wake-up from another thread); only what follows a miss runs as the flight's task.
            // Events are marked before the claim: a completion published between the claim's
            // answer and the wait is not lost (the waiter, registered only if the claim finds
            // the fill busy, learns of it: `FleetCache::waiter_since`).
            let claimer = fleet.clone();
            let limit = budget.store_limit(runtime);
            let claim = async move {
                let mark = claimer.mark();
                let claim = claimer.claim(key, limit).await;
                (mark, claim)
            };
            let (owned, source) = (runtime.clone(), source.clone());
            let then = move |stale, claimed| {
                let flight = Flight {
                    runtime: owned,
                    key,
                    local,
                    policy,
                    budget,
                    stale,
                };
                after_claim(flight, request, fleet, source, span, claimed)
            };
            runtime.flights().lead(key, stored, claim, then).await
        }
        (coalesce, tier) => {
            let write = matches!(tier, Tier::Shared | Tier::Fleet(_));
            let fetch_store = {
                let runtime = runtime.clone();
                move |stale| {
                    let flight = Flight {
                        runtime,
                        key,
                        local,
                        policy,
                        budget,
                        stale,
                    };
                    fetch_and_store(flight, request, write).instrument(span)
                }
            };
            // Boxed: these paths fetch upstream (or wait for a fetch), and their futures, held
            // inline, would make every call's future larger; a fleet L2 hit moves the whole
            // future a few times on its way (measured: 8 KB read_through, 17 KB call).
            if coalesce {
                let stored = || stored_local.get(&key);
                Box::pin(runtime.flights().run(key, stored, fetch_store)).await
            } else {
                let stale = coalesce::Invalidated::default();
                (Box::pin(fetch_store(stale)).await, Role::Leader)
            }
        }
    };
    let cache = match role {
        Role::Leader => match source.load(std::sync::atomic::Ordering::Acquire) {
            SOURCE_HIT => CacheOutcome::Hit,
            SOURCE_COALESCED => CacheOutcome::Coalesced,
            _ => CacheOutcome::Miss,
        },
        Role::Follower => CacheOutcome::Coalesced,
        Role::Stored => CacheOutcome::Hit,
    };
    // A value of another type under the same key (two stitches sharing a name and shape) is a
    // miss in spirit; report it rather than panic.
    let outcome = outcome.and_then(|value| {
        policy
            .values
            .typed(&value)
            .ok_or_else(|| other_type(endpoint))
    });
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("cache", cache.as_str());
        record_error(&span, &outcome);
    }
    meter::call(endpoint, cache, &outcome, Some(started.elapsed()));
    outcome
}

/// The work of a fleet flight after its leader's inline claim (boxed: one type for its paths,
/// allocated only on a miss, which spawns a task anyway).
type FlightWork = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value>> + Send>>;

const SOURCE_MISS: u8 = 0;
const SOURCE_HIT: u8 = 1;
const SOURCE_COALESCED: u8 = 2;

/// One in-process flight: where its leader keeps the value it fetches (the request is passed
/// beside it, to be consumed by the fetch). Owned (`'static`) so it can run as its own task
/// under coalescing.
struct Flight {
    runtime: Runtime,
    key: CacheKey,
    local: Arc<StitchCache>,
    policy: &'static CachePolicy,
    budget: Budget,
    /// Set by an exact invalidation of the key while the flight runs: nothing is stored (for a
    /// fleet fill: nothing it claimed before the invalidation).
    stale: coalesce::Invalidated,
}

impl Flight {
    /// Keeps `value` in-process for `ttl` unless an exact invalidation of the key arrived while
    /// it was fetched: checked after the insert too, so an invalidation landing between the
    /// check and the insert still wins (it sets the flag, then removes; the flight inserts,
    /// then re-checks). `claimed_at`: the fleet fill generation this flight leads at, so an
    /// invalidation that came before its claim (its own, announced back to this process, or
    /// another process's whose announcement arrives late) does not count.
    fn keep_local(&self, value: &Value, ttl: Duration, claimed_at: Option<u64>) {
        if self.invalidated(claimed_at) {
            return;
        }
        self.local.insert_for(self.key, value.clone(), ttl);
        if self.invalidated(claimed_at) {
            self.local.remove(&self.key);
        }
    }

    fn invalidated(&self, claimed_at: Option<u64>) -> bool {
        match claimed_at {
            Some(generation) => self.stale.since_claim_at(generation),
            None => self.stale.any(),
        }
    }
}

/// The in-process leader's work with a fleet tier (see `cache/fleet.rs`): claim the entry — a hit
/// ends it; the fill lease makes this instance the fleet's one fetcher; otherwise wait for the
/// instance that holds it and claim again. With the store unavailable, fetch here alone.
async fn fleet_fill(
    flight: Flight,
    request: RequestParts,
    fleet: Arc<crate::cache::fleet::FleetCache>,
    source: Arc<std::sync::atomic::AtomicU8>,
    claimed: Option<(crate::cache::fleet::Mark, Claim)>,
) -> Result<Value> {
    use crate::cache::fleet::RECHECK;
    use std::sync::atomic::Ordering;
    let (endpoint, key, budget) = (request.endpoint, flight.key, flight.budget);
    // The first claim was made by the leader inline, unless that was cut short.
    // Registered as waiting before claiming again; after the inline claim only if it was busy.
    let (mut waiter, mut claimed) = match claimed {
        Some((mark, claim)) => (Err(mark), Some(claim)),
        None => (Ok(fleet.waiter(key)), None),
    };
    loop {
        let claim = match claimed.take() {
            Some(claim) => claim,
            None => fleet.claim(key, budget.store_limit(&flight.runtime)).await,
        };
        match claim {
            Claim::Hit(bytes, ttl) => match fleet_hit(&flight, endpoint, bytes, ttl, &source) {
                Some(outcome) => return outcome,
                None => break,
            },
            Claim::Leader(holding) => {
                source.store(SOURCE_MISS, Ordering::Release);
                drop(waiter);
                return lead(flight, request, holding).await;
            }
            Claim::Busy { lease_left, asked } => {
                source.store(SOURCE_COALESCED, Ordering::Release);
                let left = budget.left();
                if left.is_zero() {
                    return Err(budget.timed_out(endpoint));
                }
                // Woken by the filler's completion; re-checks by the lease's end (a dead filler)
                // and every `RECHECK` (a lost message) anyway. A completion that carried the
                // value answers as a hit would, without claiming again.
                let wait = (lease_left + Duration::from_millis(1))
                    .min(RECHECK)
                    .min(left);
                let registered = match waiter {
                    Ok(registered) => registered,
                    Err(mark) => fleet.waiter_since(key, mark),
                };
                claimed = registered
                    .wait(wait, asked)
                    .await
                    .map(|(bytes, ttl)| Claim::Hit(bytes, ttl));
                waiter = Ok(registered);
            }
            Claim::Unavailable => {
                meter::degraded(endpoint, "fleet_cache_local");
                break;
            }
        }
    }
    drop(waiter);
    source.store(SOURCE_MISS, Ordering::Release);
    fetch_and_store(flight, request, false).await
}

/// What the in-process leader does with its inline claim's answer (see `Flights::lead`): a hit
/// is the flight's outcome at once; anything else goes on as the flight's task.
fn after_claim(
    flight: Flight,
    request: RequestParts,
    fleet: Arc<crate::cache::fleet::FleetCache>,
    source: Arc<std::sync::atomic::AtomicU8>,
    span: tracing::Span,
    claimed: Option<(crate::cache::fleet::Mark, Claim)>,
) -> coalesce::Next<FlightWork> {
    let claimed = match claimed {
        Some((_, Claim::Hit(bytes, ttl))) => {
            match fleet_hit(&flight, request.endpoint, bytes, ttl, &source) {
                Some(outcome) => return coalesce::Next::Done(outcome),
                None => {
                    // Another build's bytes under this key: fetch here, store nothing shared.
                    source.store(SOURCE_MISS, std::sync::atomic::Ordering::Release);
                    let fetch = fetch_and_store(flight, request, false);
                    return coalesce::Next::Rest(Box::pin(fetch.instrument(span)));
                }
            }
        }
        // Leader, busy or unavailable: the fill goes on from that answer. `None` (the leader was
        // dropped during its claim while others wait): from a new claim (the dropped one gave
        // back what it took: `FleetCache::claim`).
        claimed => claimed,
    };
    let fill = fleet_fill(flight, request, fleet, source, claimed);
    coalesce::Next::Rest(Box::pin(fill.instrument(span)))
}

/// A shared-tier hit of a fleet fill: decoded into this process's type and kept in-process no
/// longer than the shared entry lives, or a negative entry's error (the fleet's outcome).
/// `None`: another build's bytes under this key (fetch here, store nothing shared).
fn fleet_hit(
    flight: &Flight,
    endpoint: &'static Endpoint,
    bytes: bytes::Bytes,
    ttl: Duration,
    source: &std::sync::atomic::AtomicU8,
) -> Option<Result<Value>> {
    use crate::cache::record::Record;
    use std::sync::atomic::Ordering;
    match record::decode_any(bytes)? {
        Record::Response(raw) => {
            let value = flight.policy.values.decode(endpoint, raw).ok()?;
            flight.keep_local(&value, ttl.min(flight.policy.ttl), None);
            let hit = if source.load(Ordering::Acquire) == SOURCE_COALESCED {
                SOURCE_COALESCED
            } else {
                SOURCE_HIT
            };
            source.store(hit, Ordering::Release);
            Some(Ok(value))
        }
        Record::Failure(failure) => {
            source.store(SOURCE_COALESCED, Ordering::Release);
            Some(Err(failure.to_error(endpoint)))
        }
    }
}

/// The fleet's one fetcher for a key: fetch, keep in-process, complete the shared entry (a
/// negative one for a failed exchange) behind the call.
async fn lead(
    flight: Flight,
    request: RequestParts,
    holding: crate::cache::fleet::Holding,
) -> Result<Value> {
    use crate::cache::fleet::NEGATIVE_TTL;
    let policy = flight.policy;
    use crate::cache::record::Failure;
    let share_failure = |holding: crate::cache::fleet::Holding, error: &Error| {
        match Failure::of(error) {
            Some(f) => holding.complete(record::encode_failure(&f), NEGATIVE_TTL.min(policy.ttl)),
            // The leader's own situation (its budget, throttle, circuit): a waiter takes over.
            None => drop(holding),
        }
    };
    let (endpoint, mut raw) = match fetch(&flight.runtime, request, flight.budget).await {
        Ok(fetched) => fetched,
        Err(e) => {
            share_failure(holding, &e);
            return Err(e);
        }
    };
    let bytes = record::encode(&raw);
    let sent = std::mem::take(&mut raw.sent);
    match policy.values.decode(endpoint, raw) {
        Ok(value) => {
            let claimed_at = Some(holding.generation());
            flight.keep_local(&value, policy.ttl, claimed_at);
            if flight.invalidated(claimed_at) || !holding.still_held() {
                // Invalidated meanwhile, or the lease is gone: the fence would refuse the write.
                drop(holding);
            } else {
                holding.complete(bytes, policy.ttl);
            }
            Ok(value)
        }
        Err(e) => {
            let e = sent.redact(e);
            share_failure(holding, &e);
            Err(e)
        }
    }
}

/// A shared-store hit, decoded into this process's type and kept in the in-process tier.
async fn from_store<D: Decoded>(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    key: CacheKey,
    local: &StitchCache,
    policy: &CachePolicy,
    budget: Budget,
) -> Option<D::Output> {
    let store = runtime.store()?;
    let limit = budget.store_limit(runtime);
    let store_key = key.store_key(runtime.layout());
    let read = runtime
        .store_breaker()
        .run(limit, "get", || store.get(&store_key));
    let bytes = match read.await {
        Some(Ok(found)) => found?,
        Some(Err(e)) => {
            tracing::warn!(stitch = endpoint.name, error = %e, "cache store read failed; treating as a miss");
            meter::store_error(endpoint, "get", "store_read_as_miss");
            return None;
        }
        // The store failed moments ago (the runtime's store breaker): a miss at no cost.
        None => {
            meter::degraded(endpoint, "store_read_as_miss");
            return None;
        }
    };
    let raw = record::decode(bytes)?;
    let value = policy.values.decode(endpoint, raw).ok()?;
    local.insert(key, value.clone(), policy);
    policy.values.typed(&value)
}

/// The leader's work without a fleet tier: fetch, decode, then store in-process and, when
/// `write`, in the shared store behind the call. An exact invalidation during the fetch wins:
/// nothing is stored.
async fn fetch_and_store(flight: Flight, request: RequestParts, write: bool) -> Result<Value> {
    let (runtime, key, policy) = (&flight.runtime, flight.key, flight.policy);
    let (endpoint, mut raw) = fetch(runtime, request, flight.budget).await?;
    // No record to encode while the store breaker is open: the write would be skipped (counted
    // below, once the value decoded).
    let stored = runtime
        .store()
        .filter(|_| write && !runtime.store_breaker().is_open())
        .map(|_| record::encode(&raw));
    let sent = std::mem::take(&mut raw.sent);
    let value = policy
        .values
        .decode(endpoint, raw)
        .map_err(|e| sent.redact(e))?;
    flight.keep_local(&value, policy.ttl, None);
    if flight.invalidated(None) {
        return Ok(value);
    }
    if let (Some(store), Some(bytes)) = (runtime.store(), stored) {
        let (store, store_key, ttl) = (store.clone(), key.store_key(runtime.layout()), policy.ttl);
        let (limit, breaker) = (runtime.store_timeout(), runtime.store_breaker().clone());
        behind(async move {
            let set = || store.set(&store_key, bytes, ttl);
            match breaker.run(limit, "set", set).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::warn!(stitch = endpoint.name, error = %e, "cache store write failed");
                    meter::store_error(endpoint, "set", "store_write_skipped");
                }
                None => meter::degraded(endpoint, "store_write_skipped"),
            }
        })
        .await;
    } else if write && runtime.store().is_some() {
        meter::degraded(endpoint, "store_write_skipped");
    }
    Ok(value)
}

/// A call's total budget: the deadline every step counts against (store reads, throttle waits,
/// backoff, attempts) and the timeout it came from (for the error).
#[derive(Clone, Copy)]
struct Budget {
    deadline: tokio::time::Instant,
    total: Duration,
}

impl Budget {
    /// Starts now: the stitch's `timeout`, else the runtime's (30 s unless set).
    fn start(runtime: &Runtime, endpoint: &Endpoint) -> Self {
        let total = endpoint.timeout.unwrap_or(runtime.timeout());
        let now = tokio::time::Instant::now();
        // A timeout too long for the clock (`Duration::MAX`) is no bound in practice: a year.
        let deadline = now
            .checked_add(total)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        Budget { deadline, total }
    }

    /// What one store operation may take: the store timeout, or what is left of the budget.
    fn store_limit(&self, runtime: &Runtime) -> Duration {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        runtime.store_timeout().min(left)
    }
}

impl Budget {
    /// What is left of the call's total.
    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }

    /// The error of a call whose total ran out.
    fn timed_out(&self, endpoint: &'static Endpoint) -> Error {
        Error::Timeout {
            stitch: endpoint.name,
            bound: TimeoutBound::Total,
            after: self.total,
        }
    }
}

/// Runs `work` (a store write, already bounded) behind the call: on its own task, so neither the
/// caller nor the coalesced callers waiting for the value wait for it, and dropping the call
/// cannot cut it short. Outside a tokio runtime it runs inline.
async fn behind(work: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => drop(handle.spawn(work.instrument(tracing::Span::current()))),
        Err(_) => work.await,
    }
}

/// A free stitch's call, on the process-wide runtime.
#[doc(hidden)]
pub async fn call_global<D: Decode>(request: RequestParts) -> Result<D::Output> {
    call::<D>(crate::runtime::global()?, request).await
}

/// A cached free stitch's call, on the process-wide runtime.
#[doc(hidden)]
pub async fn call_global_cached<D: Decoded>(request: RequestParts) -> Result<D::Output> {
    call_cached::<D>(crate::runtime::global()?, request).await
}

/// A cached value of another type than the call's output: the policy's value functions are built
/// for the output type of the same descriptor, so this is reported rather than expected.
fn other_type(endpoint: &'static Endpoint) -> Error {
    Error::Config {
        stitch: endpoint.name,
        reason:
            "two stitches share this name but return different types; give one a distinct `name`"
                .into(),
    }
}

/// A response still rejected (a soft wall) right after a refresh: reported rather than decoded.
fn still_rejected(strategy: &crate::auth::strategy::Registered, refreshed: bool) -> Error {
    let reason = if refreshed {
        "the upstream still rejects the credential right after it was refreshed"
    } else {
        "the upstream rejects the credential, a fixed one that cannot be refreshed"
    };
    Error::Auth {
        strategy: strategy.name.to_string(),
        status: None,
        reason: reason.into(),
        body: String::new(),
    }
}

/// An attempt found no request to send: the attempt loop only runs again after an attempt that
/// kept a copy, so this is a bug in the pipeline, reported rather than panicked on.
fn no_request(endpoint: &'static Endpoint) -> Error {
    Error::Config {
        stitch: endpoint.name,
        reason: "internal: attempt without a request".into(),
    }
}

fn invalidation_only(endpoint: &'static Endpoint) -> Error {
    Error::Config {
        stitch: endpoint.name,
        reason: "called inside `stitch::invalidate`: the entry was removed and nothing was sent"
            .into(),
    }
}

/// Resolves the request, then runs its attempts within the call's total timeout (see
/// [`exchange`]).
///
/// Not an `async fn`: an `async fn` keeps its arguments in its future for its whole life, and
/// `request` would be kept next to the `Prepared` made from it. Inlined so that the future is
/// built in place where it is awaited (the work before it is [`resolve`]); built here and
/// returned, it would be copied once more, which costs more than the smaller future saves
/// (callgrind, `benches/examples/probe.rs`).
#[inline(always)]
fn fetch<'a>(
    runtime: &'a Runtime,
    request: RequestParts,
    budget: Budget,
) -> impl std::future::Future<Output = Result<(&'static Endpoint, RawResponse)>> + Send + 'a {
    let endpoint = request.endpoint;
    let (mut prepared, failed) = owned(resolve(runtime, request, &tracing::Span::current()));
    async move {
        if let Some(error) = failed {
            return Err(*error);
        }
        let raw = exchange(runtime, endpoint, &mut prepared, budget).await?;
        Ok((endpoint, raw))
    }
}

/// [`fetch`]'s first step: the request resolved against the runtime, its host on the call's span.
fn resolve(runtime: &Runtime, request: RequestParts, span: &tracing::Span) -> Result<Prepared> {
    let prepared = request.prepare(runtime.request_context())?;
    if !span.is_disabled() {
        // The host only: the URL's userinfo, path and query stay out of traces.
        if let Some(host) = prepared.url.host_str() {
            span.record("server.address", host);
        }
        if let Some(port) = prepared.url.port_or_known_default() {
            span.record("server.port", port);
        }
    }
    Ok(prepared)
}

/// Runs the attempts of a resolved request within the call's total timeout: the circuit admits
/// the call (or it fails fast), each attempt acquires the throttle, sends within the per-attempt
/// timeout and reads the body; retryable failures back off and try again.
///
/// `prepared` is borrowed from the future that owns it (each attempt takes or copies it), so no
/// layer below keeps a copy of its own. Inlined for the reason given at [`fetch`].
#[inline(always)]
#[allow(clippy::manual_async_fn)] // as an `async fn`, the call future grew by 144 B (probe)
fn exchange<'a>(
    runtime: &'a Runtime,
    endpoint: &'static Endpoint,
    prepared: &'a mut Option<Prepared>,
    budget: Budget,
) -> impl std::future::Future<Output = Result<RawResponse>> + Send + 'a {
    async move {
        let admission = match &endpoint.circuit {
            Some(policy) => Some(
                runtime
                    .circuits()
                    .admit(endpoint, policy, budget.total)
                    .await?,
            ),
            None => None,
        };
        // Every call has a deadline (the runtime's default when the stitch declares none), so a
        // silent upstream never holds a call forever.
        let attempts = attempts(runtime, endpoint, prepared, Some(budget.deadline));
        let outcome = tokio::time::timeout_at(budget.deadline, attempts)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    stitch: endpoint.name,
                    bound: TimeoutBound::Total,
                    after: budget.total,
                })
            });
        if let Some(admission) = admission {
            match admission.report(&outcome, budget.deadline).await {
                Transition::Opened(_) => meter::circuit(endpoint, "open"),
                Transition::Closed => meter::circuit(endpoint, "closed"),
                Transition::Unchanged => {}
            }
        }
        outcome
    }
}

/// The attempt loop: retries what the policy retries while attempts and the retry budget last,
/// waiting the backoff (or the upstream's `Retry-After`) in between; a `401` with an `auth`
/// provider refreshes it once and redoes the attempt without counting it.
///
/// `spare` is the request each attempt takes (the last one) or copies (one that may run again).
/// Neither a response nor an error is kept across an await here (what follows a failure is
/// decided first, as a [`NextAttempt`]): this future's layout reserves room for every value kept across
/// any of its awaits, in every state, including the one that awaits the attempt.
#[allow(clippy::manual_async_fn)] // as an `async fn`, the call future grew by 144 B (probe)
fn attempts<'a>(
    runtime: &'a Runtime,
    endpoint: &'static Endpoint,
    spare: &'a mut Option<Prepared>,
    deadline: Option<tokio::time::Instant>,
) -> impl std::future::Future<Output = Result<RawResponse>> + Send + 'a {
    async move {
        let span = tracing::Span::current();
        if endpoint.retry.is_some() {
            runtime.retry_budgets().deposit(endpoint);
        }
        let credentials = runtime.credentials_for(endpoint)?;
        let mut attempt = 1u32;
        let mut refreshed = false;
        loop {
            span.record("attempts", attempt);
            meter::attempt(endpoint);
            // Only a call that may run again keeps a copy of its request.
            let again = endpoint.retry.is_some_and(|p| attempt < p.attempts)
                || (credentials.refreshes() && !refreshed);
            let mut sent_with = None;
            let attempted = one_attempt(
                runtime,
                endpoint,
                &mut *spare,
                again,
                deadline,
                &credentials,
                &mut sent_with,
            );
            // Bound first: a `match` keeps its scrutinee in the future's layout across every await
            // in its arms.
            let attempted = attempted.await;
            let next = match attempted {
                Ok(raw) => match (&credentials, sent_with) {
                    (Credentials::Strategy(strategy), Some(sent)) => {
                        // Decided without an await: only a refresh or a renewal has work to wait
                        // for, boxed so that the common case keeps no response across an await.
                        match accepted(runtime, strategy, &raw, sent, refreshed)? {
                            Accepted::Yes => return Ok(raw),
                            Accepted::Renewing(work) => {
                                return Ok(Box::pin(renew(work, raw)).await);
                            }
                            // Refreshed below, once the response is dropped (a response
                            // alive across that await would sit in every call's future).
                            Accepted::Refresh => NextAttempt::RefreshStrategy(strategy, sent),
                        }
                    }
                    _ => return Ok(raw),
                },
                Err(error) => next_after(
                    runtime,
                    endpoint,
                    &credentials,
                    Failed {
                        error,
                        sent_with,
                        attempt,
                        refreshed,
                        deadline,
                    },
                )?,
            };
            match next {
                NextAttempt::RefreshProvider(auth) => {
                    refreshed = true;
                    auth.refresh().await?;
                }
                // Single-flight per credential: concurrent 401s on one credential share one
                // refresh; a refresh for a credential already replaced does nothing.
                NextAttempt::RefreshStrategy(strategy, failed) => {
                    refreshed = true;
                    Box::pin(strategy.refresh(failed, runtime.auth_context())).await?;
                }
                NextAttempt::Backoff(wait) => {
                    span.record("backoff_ms", wait.as_secs_f64() * 1e3);
                    meter::retry(endpoint);
                    Box::pin(tokio::time::sleep(wait)).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// What the attempt loop does after an attempt it does not return from.
enum NextAttempt<'c> {
    /// A strategy read a success as a rejection and was refreshed: redo the attempt.

    /// A `401` under an `auth` provider: refresh it, then redo the attempt (not counted).
    RefreshProvider(&'c Arc<dyn crate::auth::Auth>),
    /// A rejection under a strategy: refresh the credential that was sent, then redo the attempt.
    RefreshStrategy(&'c Arc<crate::auth::strategy::Registered>, Credential),
    /// A retryable failure: wait this long, then the next attempt.
    Backoff(std::time::Duration),
}

/// A failed attempt, as [`next_after`] decides on it.
struct Failed {
    error: Error,
    /// The strategy credential the attempt sent, if any.
    sent_with: Option<Credential>,
    attempt: u32,
    /// Whether the credential was refreshed already during this call.
    refreshed: bool,
    deadline: Option<tokio::time::Instant>,
}

/// After a failed attempt: refresh the credential once on a rejection, else retry what the policy
/// retries while attempts, the budget and the retry budget last; `Err`: the call fails with it.
fn next_after<'c>(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    credentials: &'c Credentials<'c>,
    failed: Failed,
) -> Result<NextAttempt<'c>> {
    let Failed {
        error,
        sent_with,
        attempt,
        refreshed,
        deadline,
    } = failed;
    let unauthorized = match (credentials, &error) {
        // The strategy says which statuses reject its credential (default: `401`).
        (
            Credentials::Strategy(strategy),
            Error::Status {
                status,
                headers,
                body,
                ..
            },
        ) => strategy.rejected(&AuthResponse {
            status: *status,
            headers,
            body: body.as_bytes(),
            url: None,
        }),
        _ => error.status().is_some_and(|s| s.as_u16() == 401),
    };
    // A fixed credential cannot be replaced: its rejection is the outcome (no second request).
    if unauthorized && !refreshed && credentials.refreshes() {
        match (credentials, sent_with) {
            (Credentials::Provider(auth), _) => return Ok(NextAttempt::RefreshProvider(auth)),
            (Credentials::Strategy(strategy), Some(failed)) => {
                return Ok(NextAttempt::RefreshStrategy(strategy, failed))
            }
            _ => {}
        }
    }
    let Some(policy) = &endpoint.retry else {
        return Err(error);
    };
    if attempt >= policy.attempts || !policy.retries(&error) {
        return Err(error);
    }
    let wait = match (policy.respect_retry_after, error.retry_after()) {
        // Honoured up to the retry's `max` (10 s unless declared): an upstream asking for a
        // longer wait is not waited for; the caller gets the error, which carries it.
        (true, Some(after)) if after > policy.max => return Err(error),
        (true, Some(after)) => after,
        _ => policy.delay(attempt + 1),
    };
    if let Some(deadline) = deadline {
        // A wait that outlives the budget cannot end in success: report now (the error carries
        // the upstream's Retry-After).
        if tokio::time::Instant::now() + wait >= deadline {
            return Err(error);
        }
    }
    if !runtime.retry_budgets().withdraw(endpoint) {
        tracing::debug!(stitch = endpoint.name, "retry budget exhausted");
        meter::degraded(endpoint, "retry_budget_exhausted");
        return Err(error);
    }
    tracing::debug!(
        stitch = endpoint.name,
        attempt,
        backoff_ms = wait.as_millis() as u64,
        error = %error,
        "retrying"
    );
    Ok(NextAttempt::Backoff(wait))
}

/// What a success under an auth strategy leads to.
enum Accepted<W> {
    /// The response is the attempt's outcome.
    Yes,
    /// The response is the outcome once the strategy has taken the credential it renewed (a
    /// rolled session cookie): this work, awaited before the call returns.
    Renewing(W),
    /// The strategy reads the success as a rejection (a soft wall: a `200` login page): refresh
    /// the credential that was sent and redo the attempt.
    Refresh,
}

/// A success under an auth strategy. The strategy may read it as a rejection (a second rejection
/// right after a refresh, or one of a credential that cannot be refreshed, is reported), or have
/// renewed its credential from it. Decided without awaiting, so a fixed credential's call never
/// waits on anything here.
fn accepted<'a>(
    runtime: &'a Runtime,
    strategy: &'a crate::auth::strategy::Registered,
    raw: &RawResponse,
    sent: Credential,
    refreshed: bool,
) -> Result<Accepted<impl std::future::Future<Output = ()> + Send + 'a>> {
    let response = AuthResponse {
        status: raw.status,
        headers: &raw.headers,
        body: &raw.body,
        url: Some(&raw.url),
    };
    if strategy.rejected(&response) {
        if refreshed || !strategy.refreshes() {
            return Err(still_rejected(strategy, refreshed));
        }
        return Ok(Accepted::Refresh);
    }
    Ok(
        match strategy.renewed(&response, sent, runtime.auth_context()) {
            Some(work) => Accepted::Renewing(work),
            None => Accepted::Yes,
        },
    )
}

/// The response of an attempt once the strategy's renewal work is done (its error is logged,
/// never the call's).
async fn renew(work: impl std::future::Future<Output = ()>, raw: RawResponse) -> RawResponse {
    work.await;
    raw
}

/// One attempt: throttle (waits count against the budget), auth, send within the per-attempt
/// timeout, read the body; the throttle is released when the attempt ends, however it ends.
///
/// The attempt's own request is taken from `spare` (or copied from it, when `keep`: the attempt
/// may run again) only once the throttle admits it, and moved into the send before the response
/// is awaited: the future keeps no copy of it while the request is in flight.
#[allow(clippy::too_many_arguments)] // the attempt's inputs, each borrowed from the loop
#[allow(clippy::manual_async_fn)] // as an `async fn`, the call future grew by 144 B (probe)
fn one_attempt<'a>(
    runtime: &'a Runtime,
    endpoint: &'static Endpoint,
    spare: &'a mut Option<Prepared>,
    keep: bool,
    deadline: Option<tokio::time::Instant>,
    credentials: &'a Credentials<'a>,
    sent_with: &'a mut Option<Credential>,
) -> impl std::future::Future<Output = Result<RawResponse>> + Send + 'a {
    async move {
        // Its own future (no state of it is kept while the request is in flight).
        let _permit = throttle(runtime, endpoint, spare, deadline).await?;
        // The loop only comes back after an attempt that kept a copy.
        let Some(mut prepared) = (if keep { spare.clone() } else { spare.take() }) else {
            return Err(no_request(endpoint));
        };
        // Moved through, never borrowed here: a value borrowed across an await stays in the
        // future's layout after it is moved into the send.
        if !matches!(credentials, Credentials::None) {
            // Boxed: calls without credentials do not carry its state in their future.
            prepared = Box::pin(authorize(
                runtime,
                endpoint,
                prepared,
                credentials,
                sent_with,
            ))
            .await?;
        }
        match endpoint.each {
            None => send(runtime.transport(), endpoint, prepared).await,
            Some(each) => Box::pin(tokio::time::timeout(
                each,
                send(runtime.transport(), endpoint, prepared),
            ))
            .await
            .unwrap_or(Err(Error::Timeout {
                stitch: endpoint.name,
                bound: TimeoutBound::Each,
                after: each,
            })),
        }
    }
}

/// The attempt's throttle permit (none for an unthrottled stitch); waits count against the budget.
async fn throttle(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    spare: &Option<Prepared>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Option<crate::throttle::limiter::ThrottlePermit>> {
    if endpoint.throttles.is_empty() {
        return Ok(None);
    }
    let host = match spare {
        Some(prepared) => crate::throttle::host_key(&prepared.url),
        None => return Err(no_request(endpoint)),
    };
    // The uncontended grant needs no future; waits are boxed so unthrottled calls carry a
    // smaller future.
    let permit = match runtime.limiters().try_acquire(endpoint, &host, deadline)? {
        Acquired::Now(permit) => permit,
        Acquired::Later(later) => Box::pin(later.wait()).await,
        Acquired::Contended => {
            Box::pin(runtime.limiters().acquire(endpoint, &host, deadline)).await?
        }
    };
    tracing::Span::current().record("throttle_wait_ms", permit.waited.as_secs_f64() * 1e3);
    meter::throttle_wait(endpoint, permit.waited);
    Ok(Some(permit))
}

/// The attempt's request with its credential applied: a provider's headers (each marked
/// sensitive), or a strategy's credential (recorded in `sent_with`, to refresh or renew it).
async fn authorize(
    runtime: &Runtime,
    endpoint: &'static Endpoint,
    mut prepared: Prepared,
    credentials: &Credentials<'_>,
    sent_with: &mut Option<Credential>,
) -> Result<Prepared> {
    match credentials {
        Credentials::None => {}
        Credentials::Provider(auth) => {
            // Every header the provider sets is a credential, whatever its name (`x-tenant`):
            // marked sensitive, so it is redacted wherever an upstream quotes it back. The copy
            // costs nothing next to the request it precedes (this runs only when sending).
            let before = prepared.headers.clone();
            auth.apply(&mut prepared.headers).await?;
            for (name, value) in prepared.headers.iter_mut() {
                if before.get(name) != Some(&*value) {
                    value.set_sensitive(true);
                }
            }
        }
        Credentials::Strategy(strategy) => {
            let method = endpoint.method.to_http();
            let Prepared {
                url,
                headers,
                body,
                secrets,
                principal,
            } = &mut prepared;
            let mut request = AuthRequest {
                method: &method,
                url,
                headers,
                body: body.as_deref(),
                secrets,
                principal: principal.as_deref(),
            };
            *sent_with = Some(strategy.apply(&mut request, runtime.auth_context()).await?);
        }
    }
    Ok(prepared)
}
