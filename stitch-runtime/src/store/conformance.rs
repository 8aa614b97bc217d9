//! The store conformance suite: what every driver must do for stitch's fleet protocols to hold.
//! A third-party driver calls it from its own tests:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn my_store_conforms() {
//!     stitch::store::conformance::run(|| MyStore::connect_to_test_server()).await;
//! }
//! ```
//!
//! Every check uses fresh random keys, so the store may be shared and need not be empty. Each
//! verb the driver declares in [`Store::capabilities`] is checked (round trips, expiry,
//! concurrency, idempotent retries); each verb it does not declare must fail with
//! [`StoreErrorKind::Unsupported`], never answer something made up. Failures panic with a
//! message naming the verb and what was expected. Timing checks use real time with generous
//! margins (TTLs of a few hundred milliseconds); the suite takes about five seconds.

use super::keys::{FillKeySet, KeyLayout};
use super::{Admission, LeaseReservation};
use super::{
    Cas, CircuitEvent, CircuitPhase, CircuitState, CircuitStep, Claimed, Decision, Event, Fill,
    FillClaim, Gcra, LeaseDecision, LeaseRequest, Notify, OpId, Store, StoreErrorKind,
    Subscription, Verb,
};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

const MS: u64 = 1000;

/// Runs every check on stores made by `make` (called once per check; returning clones of one
/// store, or new connections to one server, is fine).
pub async fn run<S: Store>(make: impl Fn() -> S) {
    let caps = make().capabilities();
    for verb in [Verb::Get, Verb::Set, Verb::Delete] {
        assert!(caps.contains(verb), "every store must implement `{verb}`");
    }
    round_trips(Arc::new(make())).await;
    for verb in Verb::ALL {
        if !caps.contains(verb) {
            unsupported(&make(), verb).await;
            continue;
        }
        let s = Arc::new(make());
        match verb {
            Verb::Time => time(s.as_ref()).await,
            Verb::Increment => increment(&s).await,
            Verb::SetIfAbsent => set_if_absent(&s).await,
            Verb::CompareAndSet => compare_and_set(&s).await,
            Verb::Reserve => reserve(&s).await,
            Verb::Lease => lease(&s).await,
            Verb::LeaseReserve => lease_reserve(&s).await,
            Verb::Circuit => circuit(&s).await,
            Verb::Fill => fill(&s, caps.contains(Verb::Subscribe)).await,
            Verb::Bump => bump(&s, caps.contains(Verb::Subscribe)).await,
            Verb::FillInvalidateIf if caps.contains(Verb::Fill) => {
                fill_invalidate_if(&s, caps.contains(Verb::Subscribe)).await
            }
            Verb::Publish if caps.contains(Verb::Subscribe) => pub_sub(&s).await,
            _ => {}
        }
    }
    let missing: Vec<Verb> = Verb::ALL
        .into_iter()
        .filter(|v| !caps.contains(*v))
        .collect();
    let err = make().require(&Verb::ALL);
    match missing.first() {
        None => assert!(
            err.is_ok(),
            "`require` of declared verbs must pass: {err:?}"
        ),
        Some(first) => {
            let err = err.expect_err("`require` must fail for an undeclared verb");
            assert!(
                err.to_string().contains(&format!("`{first}`")),
                "`require` must name the missing verb `{first}`: {err}"
            );
        }
    }
}

/// A key no other check or run uses (`tag` keeps one check's keys on one cluster slot).
fn key(tag: &str) -> String {
    format!("stitch-conformance:{{{}}}:{tag}", OpId::random())
}

async fn unsupported<S: Store>(s: &S, verb: Verb) {
    let k = key("unsupported");
    let id = OpId::random();
    let ttl = Duration::from_secs(1);
    let kind = match verb {
        Verb::Time => s.time().await.map(drop),
        Verb::Increment => s.increment(&k, 1, ttl, id).await.map(drop),
        Verb::SetIfAbsent => s.set_if_absent(&k, Bytes::new(), ttl, id).await.map(drop),
        Verb::CompareAndSet => s
            .compare_and_set(&k, None, Bytes::new(), ttl, id)
            .await
            .map(drop),
        Verb::Reserve => s.reserve(&k, gcra(1000, 0, None)).await.map(drop),
        Verb::Lease => s.lease_acquire(&k, lease_of(1, 1000, id)).await.map(drop),
        Verb::LeaseReserve => {
            let (leases, tat) = budget_keys();
            s.lease_reserve(&leases, &tat, lease_of(1, 1000, id), gcra(1000, 0, None))
                .await
                .map(drop)
        }
        Verb::Publish => s.publish(&k, Bytes::new()).await,
        Verb::Subscribe => s.subscribe(&k).await.map(drop),
        Verb::Circuit => s
            .circuit(&k, circuit_step(CircuitEvent::Admit, id))
            .await
            .map(drop),
        Verb::Fill => s
            .fill_claim(fill_keys().keys(), fill_claim(id, 1000))
            .await
            .map(drop),
        Verb::Bump => s.bump(&k, ttl, notify(&k, "bump|")).await.map(drop),
        Verb::FillInvalidateIf => s
            .fill_invalidate_if(fill_keys().keys(), b"v", None)
            .await
            .map(drop),
        _ => return,
    }
    .map_err(|e| e.kind());
    assert_eq!(
        kind,
        Err(StoreErrorKind::Unsupported),
        "an undeclared verb `{verb}` must fail as unsupported"
    );
}

async fn round_trips<S: Store>(s: Arc<S>) {
    let k = key("kv");
    let long = Duration::from_secs(30);
    assert_eq!(s.get(&k).await.unwrap(), None, "get: a fresh key is absent");
    s.set(&k, Bytes::from_static(b"\x00one\xff"), long)
        .await
        .unwrap();
    assert_eq!(
        s.get(&k).await.unwrap().as_deref(),
        Some(&b"\x00one\xff"[..]),
        "get returns the bytes set"
    );
    s.set(&k, Bytes::from_static(b"two"), long).await.unwrap();
    assert_eq!(
        s.get(&k).await.unwrap().as_deref(),
        Some(&b"two"[..]),
        "set replaces"
    );
    assert!(
        s.delete(&k).await.unwrap(),
        "delete of a present key answers true"
    );
    assert!(
        !s.delete(&k).await.unwrap(),
        "delete of an absent key answers false"
    );
    assert_eq!(s.get(&k).await.unwrap(), None, "get after delete");

    s.set(&k, Bytes::from_static(b"brief"), Duration::from_millis(150))
        .await
        .unwrap();
    assert!(
        s.get(&k).await.unwrap().is_some(),
        "a value is there before its ttl"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.get(&k).await.unwrap(),
        None,
        "set: a value is gone after its ttl"
    );
}

async fn time<S: Store>(s: &S) {
    let a = s.time().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = s.time().await.unwrap();
    assert!(
        (90 * MS..2000 * MS).contains(&b.saturating_sub(a)),
        "time: microseconds, advancing with real time (100 ms gave {} µs)",
        b.saturating_sub(a)
    );
}

async fn increment<S: Store>(s: &Arc<S>) {
    let k = key("counter");
    let ttl = Duration::from_secs(30);
    let mut tasks = JoinSet::new();
    let ids: Vec<OpId> = (0..20).map(|_| OpId::random()).collect();
    for id in ids.clone() {
        let (s, k) = (s.clone(), k.clone());
        tasks.spawn(async move { s.increment(&k, 1, ttl, id).await.unwrap() });
    }
    let got: BTreeSet<i64> = tasks.join_all().await.into_iter().collect();
    assert_eq!(
        got,
        (1..=20).collect(),
        "increment: 20 concurrent increments return exactly 1..=20"
    );
    let again = s.increment(&k, 1, ttl, ids[0]).await.unwrap();
    assert!(
        (1..=20).contains(&again),
        "increment: a retry with the same id returns its first value, got {again}"
    );
    assert_eq!(
        s.increment(&k, 5, ttl, OpId::random()).await.unwrap(),
        25,
        "increment: a retried id is not counted twice"
    );
    assert_eq!(
        s.get(&k).await.unwrap().as_deref(),
        Some(&b"25"[..]),
        "increment: the counter reads back as decimal text"
    );

    let short = key("window");
    let window = Duration::from_millis(300);
    assert_eq!(
        s.increment(&short, 1, window, OpId::random())
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        s.increment(&short, 1, window, OpId::random())
            .await
            .unwrap(),
        2
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        s.increment(&short, 1, window, OpId::random())
            .await
            .unwrap(),
        1,
        "increment: the ttl runs from the counter's creation and later increments do not extend it"
    );

    let text = key("text");
    s.set(&text, Bytes::from_static(b"abc"), ttl).await.unwrap();
    let err = s.increment(&text, 1, ttl, OpId::random()).await;
    assert_eq!(
        err.map_err(|e| e.kind()),
        Err(StoreErrorKind::Protocol),
        "increment of a non-integer fails as a protocol error"
    );
}

async fn set_if_absent<S: Store>(s: &Arc<S>) {
    let k = key("once");
    let ttl = Duration::from_millis(400);
    let first = OpId::random();
    assert!(s
        .set_if_absent(&k, Bytes::from_static(b"a"), ttl, first)
        .await
        .unwrap());
    assert!(
        !s.set_if_absent(&k, Bytes::from_static(b"b"), ttl, OpId::random())
            .await
            .unwrap(),
        "set_if_absent: a present key is not replaced"
    );
    assert!(
        s.set_if_absent(&k, Bytes::from_static(b"a"), ttl, first)
            .await
            .unwrap(),
        "set_if_absent: a retry of the call that wrote answers true"
    );
    assert_eq!(s.get(&k).await.unwrap().as_deref(), Some(&b"a"[..]));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        s.set_if_absent(&k, Bytes::from_static(b"c"), ttl, OpId::random())
            .await
            .unwrap(),
        "set_if_absent: an expired key is absent"
    );

    let race = key("race");
    let mut tasks = JoinSet::new();
    for i in 0..20u8 {
        let (s, race) = (s.clone(), race.clone());
        tasks.spawn(async move {
            s.set_if_absent(
                &race,
                Bytes::from(vec![i]),
                Duration::from_secs(30),
                OpId::random(),
            )
            .await
            .unwrap()
        });
    }
    let winners = tasks.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(winners, 1, "set_if_absent: exactly one of 20 racers writes");
}

async fn compare_and_set<S: Store>(s: &Arc<S>) {
    let k = key("cas");
    let ttl = Duration::from_secs(30);
    assert_eq!(
        s.compare_and_set(
            &k,
            Some(b"x"),
            Bytes::from_static(b"y"),
            ttl,
            OpId::random()
        )
        .await
        .unwrap(),
        Cas::Conflict { current: None },
        "compare_and_set: expecting a value on an absent key conflicts"
    );
    assert_eq!(
        s.compare_and_set(&k, None, Bytes::from_static(b"v0"), ttl, OpId::random())
            .await
            .unwrap(),
        Cas::Swapped,
        "compare_and_set: expecting absence on an absent key writes"
    );
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let (s, k) = (s.clone(), k.clone());
        tasks.spawn(async move {
            let id = OpId::random();
            let new = Bytes::from(format!("v{}", i + 1));
            let outcome = s
                .compare_and_set(&k, Some(b"v0"), new.clone(), ttl, id)
                .await
                .unwrap();
            (outcome, new, id)
        });
    }
    let results = tasks.join_all().await;
    let winners: Vec<_> = results.iter().filter(|r| r.0 == Cas::Swapped).collect();
    assert_eq!(
        winners.len(),
        1,
        "compare_and_set: exactly one of 20 racers wins"
    );
    let (_, won, id) = winners[0].clone();
    for (outcome, _, _) in &results {
        if *outcome != Cas::Swapped {
            assert_eq!(
                *outcome,
                Cas::Conflict {
                    current: Some(won.clone())
                },
                "compare_and_set: a loser sees the winner's value"
            );
        }
    }
    assert_eq!(
        s.compare_and_set(&k, Some(b"v0"), won.clone(), ttl, id)
            .await
            .unwrap(),
        Cas::Swapped,
        "compare_and_set: a retry of the winning call answers swapped"
    );
    assert_eq!(s.get(&k).await.unwrap(), Some(won));
}

fn gcra(interval_ms: u64, burst: u64, max_wait_ms: Option<u64>) -> Gcra {
    Gcra {
        interval_us: interval_ms * MS,
        tolerance_us: burst * interval_ms * MS,
        max_wait_us: max_wait_ms.map(|m| m * MS),
        id: OpId::random(),
    }
}

fn now(r: &super::Reservation) -> bool {
    matches!(r.decision, Decision::Granted { .. })
}

/// The grant time of a reservation that was not refused.
fn grant_of(r: super::Reservation) -> u64 {
    match r.decision {
        Decision::Granted { at } => {
            assert!(
                at <= r.store_time,
                "reserve: `Granted` lies in the past: {r:?}"
            );
            at
        }
        Decision::WaitUntil(at) => {
            assert!(
                at > r.store_time,
                "reserve: `WaitUntil` lies in the future: {r:?}"
            );
            at
        }
        Decision::Refused { .. } => panic!("reserve: refused without a maximum wait: {r:?}"),
    }
}

async fn reserve<S: Store>(s: &Arc<S>) {
    // Spacing: 20 concurrent reservations at 10/s get 20 distinct grants exactly 100 ms apart,
    // the first one now (nothing is slept: a reservation only books a slot).
    let k = key("tat");
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (s, k) = (s.clone(), k.clone());
        tasks.spawn(async move { s.reserve(&k, gcra(100, 0, None)).await.unwrap() });
    }
    let results = tasks.join_all().await;
    let granted_now = results.iter().filter(|r| now(r)).count();
    assert_eq!(
        granted_now, 1,
        "reserve: without burst, one of 20 is granted now"
    );
    let grants: BTreeSet<u64> = results.iter().map(|r| grant_of(*r)).collect();
    assert_eq!(grants.len(), 20, "reserve: 20 distinct slots");
    let grants: Vec<u64> = grants.into_iter().collect();
    for pair in grants.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            100 * MS,
            "reserve: slots are exactly one interval apart: {grants:?}"
        );
    }

    // Burst: `burst` extra grants now, then spacing; a maximum wait refuses without reserving.
    let k = key("burst");
    let mut now_count = 0;
    let mut last = 0;
    for _ in 0..5 {
        let r = s.reserve(&k, gcra(100, 2, None)).await.unwrap();
        now_count += usize::from(now(&r));
        last = grant_of(r);
    }
    assert_eq!(now_count, 3, "reserve: burst 2 grants 3 at once");
    let refused = s.reserve(&k, gcra(100, 2, Some(150))).await.unwrap();
    let wait = match refused.decision {
        Decision::Refused { wait_us } => wait_us,
        other => panic!("reserve: a grant beyond the maximum wait is refused, got {other:?}"),
    };
    assert!(
        (150 * MS..=300 * MS).contains(&wait),
        "reserve: the refusal says how long the wait would be: {wait}"
    );
    let next = grant_of(s.reserve(&k, gcra(100, 2, None)).await.unwrap());
    assert_eq!(next - last, 100 * MS, "reserve: a refusal reserves nothing");

    // Idempotency: a retried reservation gets its first slot and moves nothing.
    let k = key("retry");
    let first = gcra(100, 0, None);
    let a = grant_of(s.reserve(&k, first).await.unwrap());
    let a_again = grant_of(s.reserve(&k, first).await.unwrap());
    assert_eq!(
        a, a_again,
        "reserve: a retry with the same id gets the same slot"
    );
    let b = grant_of(s.reserve(&k, gcra(100, 0, None)).await.unwrap());
    assert_eq!(b - a, 100 * MS, "reserve: a retry takes no second slot");

    // Expiry of idle state: after the budget has been idle, the next grant is now again.
    let k = key("idle");
    s.reserve(&k, gcra(50, 0, None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.reserve(&k, gcra(50, 0, None)).await.unwrap();
    assert!(now(&r), "reserve: an idle budget grants now: {r:?}");
}

fn lease_of(limit: u32, ttl_ms: u64, holder: OpId) -> LeaseRequest {
    LeaseRequest {
        limit,
        ttl_us: ttl_ms * MS,
        holder,
    }
}

fn acquired(g: super::LeaseGrant) -> bool {
    match g.decision {
        LeaseDecision::Acquired { expires_at } => {
            assert!(
                expires_at > g.store_time,
                "lease: expiry in the future: {g:?}"
            );
            true
        }
        LeaseDecision::Full { next_expiry } => {
            assert!(
                next_expiry > g.store_time,
                "lease: next expiry in the future: {g:?}"
            );
            false
        }
    }
}

/// A step of a circuit opening at 3 failures, open for 150 ms, with trials leased for 300 ms.
fn circuit_step(event: CircuitEvent, id: OpId) -> CircuitStep {
    CircuitStep {
        event,
        failures: 3,
        cooldown_us: 150 * MS,
        trial_ttl_us: 300 * MS,
        id,
    }
}

async fn circuit<S: Store>(s: &Arc<S>) {
    use CircuitEvent::{Abandon, Admit, Failure, Success};
    let k = key("circuit");
    let step = {
        let (s, k) = (s.clone(), k.clone());
        move |event, id| {
            let (s, k) = (s.clone(), k.clone());
            async move { s.circuit(&k, circuit_step(event, id)).await.unwrap() }
        }
    };
    let r = step(Admit, OpId::random()).await;
    assert_eq!(
        (r.before, r.state),
        (CircuitPhase::Closed, CircuitState::Closed { failures: 0 }),
        "circuit: an absent circuit is closed"
    );
    step(Failure, OpId::random()).await;
    let second = OpId::random();
    assert_eq!(
        step(Failure, second).await.state,
        CircuitState::Closed { failures: 2 },
        "circuit: failures are counted"
    );
    assert_eq!(
        step(Failure, second).await.state,
        CircuitState::Closed { failures: 2 },
        "circuit: a retried failure (same id) counts once"
    );
    let r = step(Failure, OpId::random()).await;
    assert!(
        r.before == CircuitPhase::Closed && matches!(r.state, CircuitState::Open { .. }),
        "circuit: the third failure opens it: {r:?}"
    );
    match step(Admit, OpId::random()).await.state {
        CircuitState::Open { retry_in_us } => assert!(
            retry_in_us > 0 && retry_in_us <= 150 * MS,
            "circuit: retry_in within the cooldown: {retry_in_us}"
        ),
        other => panic!("circuit: an open circuit refuses, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // After the cooldown, 10 racers: exactly one becomes the trial.
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let step = step.clone();
        tasks.spawn(async move {
            let id = OpId::random();
            (step(Admit, id).await.state, id)
        });
    }
    let results = tasks.join_all().await;
    let trials: Vec<OpId> = results
        .iter()
        .filter(|(st, _)| *st == CircuitState::Trial)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(
        trials.len(),
        1,
        "circuit: exactly one half-open trial: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|(st, _)| matches!(st, CircuitState::Trial | CircuitState::Busy { .. })),
        "circuit: the others are refused while the trial runs: {results:?}"
    );
    let trial = trials[0];
    assert_eq!(
        step(Admit, trial).await.state,
        CircuitState::Trial,
        "circuit: a retried admission of the trial keeps it"
    );
    // An abandoned trial is taken over at once by the next caller.
    step(Abandon, trial).await;
    let next = OpId::random();
    assert_eq!(
        step(Admit, next).await.state,
        CircuitState::Trial,
        "circuit: after an abandoned trial the next caller is the trial"
    );
    // A trial failing opens the circuit again.
    let r = step(Failure, next).await;
    assert!(
        r.before == CircuitPhase::HalfOpen && matches!(r.state, CircuitState::Open { .. }),
        "circuit: a failed trial reopens: {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A trial whose holder vanished is taken over after its lease (300 ms).
    let lost = OpId::random();
    assert_eq!(step(Admit, lost).await.state, CircuitState::Trial);
    assert!(
        matches!(
            step(Admit, OpId::random()).await.state,
            CircuitState::Busy { .. }
        ),
        "circuit: a live trial is exclusive"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let taker = OpId::random();
    assert_eq!(
        step(Admit, taker).await.state,
        CircuitState::Trial,
        "circuit: an expired trial is taken over"
    );
    // A success closes it for everyone.
    let r = step(Success, taker).await;
    assert_eq!(
        (r.before, r.state),
        (CircuitPhase::HalfOpen, CircuitState::Closed { failures: 0 }),
        "circuit: a successful trial closes it"
    );
    assert_eq!(
        step(Admit, OpId::random()).await.state,
        CircuitState::Closed { failures: 0 },
        "circuit: closed for every caller after a success"
    );
}

async fn lease<S: Store>(s: &Arc<S>) {
    // Limits under concurrency: 20 racers for 4 slots, exactly 4 win.
    let k = key("leases");
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (s, k) = (s.clone(), k.clone());
        tasks.spawn(async move {
            let id = OpId::random();
            (
                acquired(s.lease_acquire(&k, lease_of(4, 30_000, id)).await.unwrap()),
                id,
            )
        });
    }
    let results = tasks.join_all().await;
    let holders: Vec<OpId> = results.iter().filter(|r| r.0).map(|r| r.1).collect();
    assert_eq!(
        holders.len(),
        4,
        "lease: exactly `limit` of 20 racers hold a lease"
    );
    assert!(
        acquired(
            s.lease_acquire(&k, lease_of(4, 30_000, holders[0]))
                .await
                .unwrap()
        ),
        "lease: acquiring again as a holder refreshes (a retry is idempotent)"
    );
    let outsider = OpId::random();
    assert!(!acquired(
        s.lease_acquire(&k, lease_of(4, 30_000, outsider))
            .await
            .unwrap()
    ));

    // Release wakes: the key is published on the notify channel, in the same step.
    let channel = key("wake");
    let mut sub = s.subscribe(&channel).await.ok();
    assert!(
        s.lease_release(&k, holders[0], Some(&channel))
            .await
            .unwrap(),
        "lease_release: a holder's release answers true"
    );
    if let Some(sub) = &mut sub {
        assert_eq!(
            next_event(sub).await,
            Some(Event::Message(Bytes::from(k.clone()))),
            "lease_release: notifies with the lease set's key"
        );
    }
    assert!(
        !s.lease_release(&k, holders[0], Some(&channel))
            .await
            .unwrap(),
        "lease_release: releasing twice answers false"
    );
    assert!(
        acquired(
            s.lease_acquire(&k, lease_of(4, 30_000, outsider))
                .await
                .unwrap()
        ),
        "lease: a released slot is free"
    );

    // Expiry: a holder that stops renewing loses its slot within its ttl.
    let k = key("expiry");
    let gone = OpId::random();
    assert!(acquired(
        s.lease_acquire(&k, lease_of(1, 200, gone)).await.unwrap()
    ));
    let waiter = OpId::random();
    let full = s.lease_acquire(&k, lease_of(1, 200, waiter)).await.unwrap();
    match full.decision {
        LeaseDecision::Full { next_expiry } => assert!(
            next_expiry - full.store_time <= 200 * MS,
            "lease: `Full` names the earliest expiry: {full:?}"
        ),
        other => panic!("lease: the limit is 1, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        acquired(s.lease_acquire(&k, lease_of(1, 200, waiter)).await.unwrap()),
        "lease: an expired holder is swept on acquire"
    );
    assert!(
        !s.lease_renew(&k, gone, 200 * MS).await.unwrap(),
        "lease_renew: an expired holder cannot renew"
    );

    // Renewal: a renewed lease outlives its first ttl.
    let k = key("renew");
    let keeper = OpId::random();
    assert!(acquired(
        s.lease_acquire(&k, lease_of(1, 400, keeper)).await.unwrap()
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        s.lease_renew(&k, keeper, 400 * MS).await.unwrap(),
        "lease_renew: a holder renews"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        !acquired(
            s.lease_acquire(&k, lease_of(1, 400, OpId::random()))
                .await
                .unwrap()
        ),
        "lease: a renewed lease still holds past its first ttl"
    );
    assert!(!s.lease_renew(&k, OpId::random(), 400 * MS).await.unwrap());
}

/// The holder set and GCRA state of one fresh budget, on one cluster slot.
fn budget_keys() -> (String, String) {
    let tag = OpId::random();
    (
        format!("stitch-conformance:{{{tag}}}:leases"),
        format!("stitch-conformance:{{{tag}}}:tat"),
    )
}

/// The lease expiry and slot of an admission (checked against the store time), `None` when full;
/// panics on a refusal.
fn admitted(r: LeaseReservation) -> Option<(u64, u64)> {
    match r.decision {
        Admission::Admitted { expires_at, at } => {
            assert!(
                expires_at > r.store_time,
                "lease_reserve: lease expiry in the future: {r:?}"
            );
            Some((expires_at, at))
        }
        Admission::Full { next_expiry } => {
            assert!(
                next_expiry > r.store_time,
                "lease_reserve: next expiry in the future: {r:?}"
            );
            None
        }
        Admission::Refused { .. } => {
            panic!("lease_reserve: refused without a maximum wait: {r:?}")
        }
    }
}

async fn lease_reserve<S: Store>(s: &Arc<S>) {
    // 20 racers for 4 slots of a 10/s budget: exactly 4 are admitted, with 4 distinct slots one
    // interval apart, the first now; the 16 others reserve nothing.
    let (leases, tat) = budget_keys();
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (s, leases, tat) = (s.clone(), leases.clone(), tat.clone());
        tasks.spawn(async move {
            let r = s
                .lease_reserve(
                    &leases,
                    &tat,
                    lease_of(4, 500, OpId::random()),
                    gcra(100, 0, None),
                )
                .await
                .unwrap();
            (admitted(r), r.store_time)
        });
    }
    let results = tasks.join_all().await;
    let slots: Vec<(u64, u64)> = results
        .iter()
        .filter_map(|(a, now)| a.map(|(_, at)| (at, *now)))
        .collect();
    assert_eq!(
        slots.len(),
        4,
        "lease_reserve: exactly `limit` of 20 racers are admitted: {results:?}"
    );
    let granted_now = slots.iter().filter(|(at, now)| at <= now).count();
    assert_eq!(
        granted_now, 1,
        "lease_reserve: without burst, one admission's slot is now: {slots:?}"
    );
    let mut at: Vec<u64> = slots.iter().map(|(at, _)| *at).collect();
    at.sort_unstable();
    for pair in at.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            100 * MS,
            "lease_reserve: slots are exactly one interval apart: {at:?}"
        );
    }
    // The leases (500 ms) expire and are swept; had the 16 racers left out reserved, the next
    // slot would be 1.4 s away.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = s
        .lease_reserve(
            &leases,
            &tat,
            lease_of(4, 500, OpId::random()),
            gcra(100, 0, None),
        )
        .await
        .unwrap();
    match r.decision {
        Admission::Admitted { at, .. } => assert!(
            at <= r.store_time,
            "lease_reserve: a full budget reserves nothing, an expired lease is swept: {r:?}"
        ),
        other => panic!("lease_reserve: expired leases are swept, got {other:?}"),
    }

    // A refusal (beyond the maximum wait) takes neither the lease nor the slot.
    let (leases, tat) = budget_keys();
    let first = s
        .lease_reserve(
            &leases,
            &tat,
            lease_of(3, 30_000, OpId::random()),
            gcra(200, 0, None),
        )
        .await
        .unwrap();
    let (_, first_at) = admitted(first).expect("lease_reserve: an empty budget admits");
    let refused = s
        .lease_reserve(
            &leases,
            &tat,
            lease_of(3, 30_000, OpId::random()),
            gcra(200, 0, Some(50)),
        )
        .await
        .unwrap();
    match refused.decision {
        Admission::Refused { wait_us } => assert!(
            (50 * MS..=200 * MS).contains(&wait_us),
            "lease_reserve: the refusal says how long the wait would be: {refused:?}"
        ),
        other => panic!("lease_reserve: a slot beyond the maximum wait is refused, got {other:?}"),
    }
    // Idempotency: a retried request (same holder, same reservation id) gets its first slot
    // and keeps one lease.
    let (holder, id) = (OpId::random(), gcra(200, 0, None));
    let second = s
        .lease_reserve(&leases, &tat, lease_of(3, 30_000, holder), id)
        .await
        .unwrap();
    let (_, second_at) = admitted(second).expect("lease_reserve: a free slot admits");
    assert_eq!(
        second_at - first_at,
        200 * MS,
        "lease_reserve: the refusal reserved nothing"
    );
    let again = s
        .lease_reserve(&leases, &tat, lease_of(3, 30_000, holder), id)
        .await
        .unwrap();
    assert_eq!(
        admitted(again).map(|(_, at)| at),
        Some(second_at),
        "lease_reserve: a retry with the same ids gets the same slot"
    );
    let third = s
        .lease_reserve(
            &leases,
            &tat,
            lease_of(3, 30_000, OpId::random()),
            gcra(200, 0, None),
        )
        .await
        .unwrap();
    assert_eq!(
        admitted(third).map(|(_, at)| at - second_at),
        Some(200 * MS),
        "lease_reserve: neither the refusal nor the retry took a lease (limit 3), and the retry \
         reserved no second slot"
    );
    assert_eq!(
        admitted(
            s.lease_reserve(
                &leases,
                &tat,
                lease_of(3, 30_000, OpId::random()),
                gcra(200, 0, None)
            )
            .await
            .unwrap()
        ),
        None,
        "lease_reserve: three holders fill a limit of 3"
    );
}

async fn next_event(sub: &mut super::Subscription) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(2), sub.next())
        .await
        .unwrap_or_else(|_| panic!("subscribe: no event within 2 s"))
}

async fn pub_sub<S: Store>(s: &Arc<S>) {
    let ch = key("events");
    let other = key("other");
    let mut a = s.subscribe(&ch).await.unwrap();
    let mut b = s.subscribe(&ch).await.unwrap();
    let mut c = s.subscribe(&other).await.unwrap();
    for m in ["one", "two", "three"] {
        s.publish(&ch, Bytes::from(m)).await.unwrap();
    }
    for sub in [&mut a, &mut b] {
        for m in ["one", "two", "three"] {
            assert_eq!(
                next_event(sub).await,
                Some(Event::Message(Bytes::from(m))),
                "subscribe: every subscriber gets every message, in order"
            );
        }
    }
    s.publish(&other, Bytes::from_static(b"mark"))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut c).await,
        Some(Event::Message(Bytes::from_static(b"mark"))),
        "subscribe: a channel gets only its own messages"
    );
    drop(a);
    s.publish(&ch, Bytes::from_static(b"after")).await.unwrap();
    assert_eq!(
        next_event(&mut b).await,
        Some(Event::Message(Bytes::from_static(b"after"))),
        "subscribe: dropping one subscription leaves the others"
    );
}

/// A fresh fill key set (value, lease, generation on one tag), laid out as stitch lays out a
/// cache entry's.
fn fill_keys() -> FillKeySet {
    KeyLayout::new(Some("stitch-conformance")).entry_fill(&OpId::random().to_string())
}

fn fill_claim(holder: OpId, lease_ms: u64) -> FillClaim {
    FillClaim {
        holder,
        lease_ttl_us: lease_ms * MS,
    }
}

fn notify<'a>(channel: &'a str, message: &'static str) -> Notify<'a> {
    Notify {
        channel,
        message: Bytes::from_static(message.as_bytes()),
    }
}

/// Subscribes to `channel` when the driver can (a fill's notifications are then checked too).
async fn listen<S: Store>(s: &S, subscribe: bool, channel: &str) -> Option<Subscription> {
    if subscribe {
        Some(s.subscribe(channel).await.unwrap())
    } else {
        None
    }
}

/// Waits (at most 2 s) for `message` on `sub`, skipping others (a driver may repeat a
/// notification, for example on a retried completion).
async fn expect_message(sub: &mut Option<Subscription>, message: &str, what: &str) {
    let Some(sub) = sub else { return };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Event::Message(m))) if m == message.as_bytes() => return,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("{what}: `{message}` is published in the same step"),
        }
    }
}

/// Checks that `message` is the only message published on `channel` since the last one read
/// (a repeated `message` is allowed). Waits for `message` first, then publishes a marker that
/// ends the wait for anything else: on a cluster, a script's `PUBLISH` reaches a subscriber on
/// another node through the cluster bus, so a marker published first could overtake it.
async fn expect_only<S: Store>(
    s: &Arc<S>,
    sub: &mut Option<Subscription>,
    channel: &str,
    message: &str,
    what: &str,
) {
    let Some(sub) = sub else { return };
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some(message) {
        match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
            Ok(Some(Event::Message(m))) => seen.push(String::from_utf8_lossy(&m).into_owned()),
            Ok(other) => panic!("{what}: unexpected event {other:?}"),
            Err(_) => break,
        }
    }
    s.publish(channel, Bytes::from_static(b"end"))
        .await
        .unwrap();
    loop {
        match next_event(sub).await {
            Some(Event::Message(m)) if m == "end" => break,
            Some(Event::Message(m)) => seen.push(String::from_utf8_lossy(&m).into_owned()),
            other => panic!("{what}: unexpected event {other:?}"),
        }
    }
    seen.dedup();
    assert_eq!(seen, [message], "{what}");
}

fn leader(c: &Claimed) -> Option<u64> {
    match c {
        Claimed::Leader { generation } => Some(*generation),
        _ => None,
    }
}

/// `fill_invalidate_if`: invalidates only the value the caller saw, once; anything else is kept
/// and nobody is told.
async fn fill_invalidate_if<S: Store>(s: &Arc<S>, subscribe: bool) {
    let set = fill_keys();
    let k = set.keys();
    let channel = key("fill-if-events");
    let mut sub = listen(s.as_ref(), subscribe, &channel).await;
    let holder = OpId::random();
    let fill = |generation, value: &'static str| {
        let (s, set) = (s.clone(), set.clone());
        async move {
            let claimed = s
                .fill_claim(set.keys(), fill_claim(holder, 30_000))
                .await
                .unwrap();
            assert_eq!(claimed, Claimed::Leader { generation });
            let done = Fill {
                holder,
                generation,
                value: Bytes::from_static(value.as_bytes()),
                ttl: Duration::from_secs(30),
                notify: None,
                value_message: None,
            };
            assert!(s.fill_complete(set.keys(), done).await.unwrap());
        }
    };
    assert!(
        !s.fill_invalidate_if(k, b"v1", Some(notify(&channel, "nothing")))
            .await
            .unwrap(),
        "fill_invalidate_if: nothing stored, nothing invalidated"
    );
    fill(0, "v1").await;
    assert!(
        !s.fill_invalidate_if(k, b"v0", Some(notify(&channel, "other")))
            .await
            .unwrap(),
        "fill_invalidate_if: another value is kept"
    );
    assert_eq!(
        s.get(k.value).await.unwrap().as_deref(),
        Some(&b"v1"[..]),
        "fill_invalidate_if: the value that differs is still there"
    );
    assert!(
        s.fill_invalidate_if(k, b"v1", Some(notify(&channel, "inv-if")))
            .await
            .unwrap(),
        "fill_invalidate_if: the expected value is invalidated"
    );
    expect_only(
        s,
        &mut sub,
        &channel,
        "inv-if",
        "fill_invalidate_if: only the invalidation is published, not the refusals",
    )
    .await;
    assert_eq!(s.get(k.value).await.unwrap(), None);
    assert!(
        !s.fill_invalidate_if(k, b"v1", None).await.unwrap(),
        "fill_invalidate_if: a second caller that saw the same value invalidates nothing"
    );
    // The generation moved: the next fill leads at generation 1.
    fill(1, "v2").await;
}

async fn fill<S: Store>(s: &Arc<S>, subscribe: bool) {
    let set = fill_keys();
    let k = set.keys();
    let channel = key("fill-events");
    let mut sub = listen(s.as_ref(), subscribe, &channel).await;
    let claim = |holder, lease_ms| {
        let s = s.clone();
        let set = set.clone();
        async move {
            s.fill_claim(set.keys(), fill_claim(holder, lease_ms))
                .await
                .unwrap()
        }
    };
    // Completions that ask for the value to be carried (`stored:` + value) when it is stored.
    let complete = |holder, generation, value: &'static str, message| {
        let (s, set, channel) = (s.clone(), set.clone(), channel.clone());
        async move {
            let fill = Fill {
                holder,
                generation,
                value: Bytes::from_static(value.as_bytes()),
                ttl: Duration::from_secs(30),
                notify: Some(notify(&channel, message)),
                value_message: Some(Bytes::from_static(b"stored:")),
            };
            s.fill_complete(set.keys(), fill).await.unwrap()
        }
    };
    let (a, b) = (OpId::random(), OpId::random());

    // Claim: the first claimant leads at generation 0, the others see it busy.
    assert_eq!(
        claim(a, 30_000).await,
        Claimed::Leader { generation: 0 },
        "fill_claim: an empty key makes the claimant the leader at generation 0"
    );
    match claim(b, 30_000).await {
        Claimed::Busy { lease_ends_in_us } => assert!(
            lease_ends_in_us > 0 && lease_ends_in_us <= 30_000 * MS,
            "fill_claim: `Busy` says when the leader's lease ends: {lease_ends_in_us}"
        ),
        other => {
            panic!("fill_claim: a second holder is refused while the lease lives, got {other:?}")
        }
    }
    assert_eq!(
        claim(a, 30_000).await,
        Claimed::Leader { generation: 0 },
        "fill_claim: the holder claiming again keeps the lease (a retry is idempotent)"
    );

    // Fencing: a non-holder's completion stores nothing, frees nothing, and still notifies (with
    // its own message: the value it did not store is never carried).
    assert!(
        !complete(b, 0, "intruder", "refused").await,
        "fill_complete: a non-holder's completion answers false"
    );
    expect_message(&mut sub, "refused", "fill_complete (refused)").await;
    assert_eq!(
        s.get(k.value).await.unwrap(),
        None,
        "fill_complete: a refused completion stores nothing"
    );
    assert!(
        matches!(claim(b, 30_000).await, Claimed::Busy { .. }),
        "fill_complete: a refused completion leaves the holder's lease"
    );

    // Completion stores, frees the lease, notifies (carrying the stored value instead of the
    // plain message, as a claimant found the fill busy); a retry answers true.
    assert!(
        complete(a, 0, "v1", "done").await,
        "fill_complete: the holder's completion answers true"
    );
    expect_only(
        s,
        &mut sub,
        &channel,
        "stored:v1",
        "fill_complete: a stored value asked to be carried, with a claimant waiting, is \
         published as the prefix followed by the value, instead of the plain message",
    )
    .await;
    assert!(
        complete(a, 0, "v1", "done").await,
        "fill_complete: a retried completion answers true"
    );
    match claim(b, 30_000).await {
        Claimed::Hit { value, ttl_us } => {
            assert_eq!(
                value,
                Bytes::from_static(b"v1"),
                "fill_claim: a hit returns the bytes"
            );
            assert!(
                ttl_us > 0 && ttl_us <= 30_000 * MS,
                "fill_claim: a hit says how long the value lives: {ttl_us}"
            );
        }
        other => panic!("fill_claim: a completed fill is a hit, got {other:?}"),
    }
    assert_eq!(
        s.get(k.value).await.unwrap().as_deref(),
        Some(&b"v1"[..]),
        "fill_complete: the value reads back with `get`"
    );

    // Invalidation: the value goes, the generation moves, everyone is told (with the generation
    // it moved to).
    assert!(
        s.fill_invalidate(k, Some(notify(&channel, "inv")))
            .await
            .unwrap(),
        "fill_invalidate: answers true when a value was there"
    );
    expect_message(&mut sub, "inv|1", "fill_invalidate").await;
    assert_eq!(
        claim(a, 30_000).await,
        Claimed::Leader { generation: 1 },
        "fill_invalidate: the next fill leads at the next generation (the same holder id too)"
    );
    assert!(
        complete(a, 1, "v2", "done2").await,
        "fill_complete: a holder id that completed before completes a later fill again"
    );
    expect_only(
        s,
        &mut sub,
        &channel,
        "done2",
        "fill_complete: a fill nobody found busy publishes its plain message, not the value",
    )
    .await;
    assert!(
        matches!(claim(b, 30_000).await, Claimed::Hit { value, .. } if value == "v2"),
        "fill_complete: a later fill by the same holder id stores its own value"
    );
    assert!(s.fill_invalidate(k, None).await.unwrap());
    assert!(
        !s.fill_invalidate(k, None).await.unwrap(),
        "fill_invalidate: answers false when no value was there"
    );

    // An invalidation between claim and completion wins: the completion stores nothing.
    let set = fill_keys();
    let k = set.keys();
    let fill_at = |holder, generation, value: &'static str| Fill {
        holder,
        generation,
        value: Bytes::from_static(value.as_bytes()),
        ttl: Duration::from_secs(30),
        notify: None,
        value_message: None,
    };
    assert_eq!(
        s.fill_claim(k, fill_claim(a, 30_000)).await.unwrap(),
        Claimed::Leader { generation: 0 }
    );
    assert!(
        !s.fill_invalidate(k, None).await.unwrap(),
        "fill_invalidate: nothing stored yet"
    );
    assert!(
        !s.fill_complete(k, fill_at(a, 0, "stale")).await.unwrap(),
        "fill_complete: a fill invalidated meanwhile answers false"
    );
    assert_eq!(
        s.get(k.value).await.unwrap(),
        None,
        "fill_complete: an invalidated fill stores nothing"
    );
    assert_eq!(
        s.fill_claim(k, fill_claim(a, 30_000)).await.unwrap(),
        Claimed::Leader { generation: 1 },
        "fill_invalidate: the generation moved"
    );
    assert!(
        !s.fill_complete(k, fill_at(a, 0, "stale")).await.unwrap(),
        "fill_complete: a fill fenced with an old generation stores nothing, even when its \
         holder claimed again"
    );
    assert_eq!(s.get(k.value).await.unwrap(), None);

    // Abandon: the lease is free at once.
    let set = fill_keys();
    let k = set.keys();
    assert!(leader(&s.fill_claim(k, fill_claim(a, 30_000)).await.unwrap()).is_some());
    assert!(
        !s.fill_abandon(k, b, None).await.unwrap(),
        "fill_abandon: a non-holder holds nothing to give up"
    );
    assert!(
        s.fill_abandon(k, a, Some(notify(&channel, "gone")))
            .await
            .unwrap(),
        "fill_abandon: the holder gives its lease up"
    );
    expect_message(&mut sub, "gone", "fill_abandon").await;
    assert_eq!(
        s.fill_claim(k, fill_claim(b, 30_000)).await.unwrap(),
        Claimed::Leader { generation: 0 },
        "fill_abandon: another holder leads at once"
    );
    assert!(
        !s.fill_abandon(k, a, None).await.unwrap(),
        "fill_abandon: giving up twice answers false"
    );

    // A renewal keeps the mark of a claimant that found the fill busy.
    let set = fill_keys();
    let k = set.keys();
    assert!(leader(&s.fill_claim(k, fill_claim(a, 30_000)).await.unwrap()).is_some());
    assert!(matches!(
        s.fill_claim(k, fill_claim(b, 30_000)).await.unwrap(),
        Claimed::Busy { .. }
    ));
    assert!(s.fill_renew(k, a, 30_000 * MS).await.unwrap());
    let carried = Fill {
        value_message: Some(Bytes::from_static(b"stored:")),
        notify: Some(notify(&channel, "plain")),
        ..fill_at(a, 0, "v3")
    };
    assert!(s.fill_complete(k, carried).await.unwrap());
    expect_only(
        s,
        &mut sub,
        &channel,
        "stored:v3",
        "fill_renew: a renewed lease still carries the value to the claimant waiting for it",
    )
    .await;

    // Renewal and expiry (lease 300 ms, renewed at 150 ms: held at 375 ms, gone by 600 ms).
    let set = fill_keys();
    let k = set.keys();
    assert!(leader(&s.fill_claim(k, fill_claim(a, 300)).await.unwrap()).is_some());
    assert!(
        !s.fill_renew(k, b, 300 * MS).await.unwrap(),
        "fill_renew: a non-holder cannot renew"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        s.fill_renew(k, a, 300 * MS).await.unwrap(),
        "fill_renew: the holder renews"
    );
    tokio::time::sleep(Duration::from_millis(225)).await;
    assert!(
        matches!(
            s.fill_claim(k, fill_claim(b, 300)).await.unwrap(),
            Claimed::Busy { .. }
        ),
        "fill_renew: a renewed lease holds past its first ttl"
    );
    tokio::time::sleep(Duration::from_millis(225)).await;
    assert!(
        !s.fill_renew(k, a, 300 * MS).await.unwrap(),
        "fill_renew: an expired lease cannot be renewed"
    );
    assert_eq!(
        s.fill_claim(k, fill_claim(b, 30_000)).await.unwrap(),
        Claimed::Leader { generation: 0 },
        "fill_claim: an expired lease lets another holder lead"
    );
    assert!(
        !s.fill_complete(k, fill_at(a, 0, "late")).await.unwrap(),
        "fill_complete: a holder whose lease expired stores nothing"
    );
    assert_eq!(s.get(k.value).await.unwrap(), None);
    assert!(
        matches!(
            s.fill_claim(k, fill_claim(a, 30_000)).await.unwrap(),
            Claimed::Busy { .. }
        ),
        "fill_complete: a late completion does not free the new holder's lease"
    );

    // 20 concurrent claims by distinct holders: exactly one leads.
    let set = fill_keys();
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (s, set) = (s.clone(), set.clone());
        tasks.spawn(async move {
            s.fill_claim(set.keys(), fill_claim(OpId::random(), 30_000))
                .await
                .unwrap()
        });
    }
    let results = tasks.join_all().await;
    assert_eq!(
        results.iter().filter(|c| leader(c).is_some()).count(),
        1,
        "fill_claim: exactly one of 20 racers leads: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|c| matches!(c, Claimed::Leader { .. } | Claimed::Busy { .. })),
        "fill_claim: the others see it busy: {results:?}"
    );
}

async fn bump<S: Store>(s: &Arc<S>, subscribe: bool) {
    let k = key("generation");
    let channel = key("bumps");
    let mut sub = listen(s.as_ref(), subscribe, &channel).await;
    let long = Duration::from_secs(30);
    for n in 1..=3u64 {
        assert_eq!(
            s.bump(&k, long, notify(&channel, "g|")).await.unwrap(),
            n,
            "bump: returns 1, 2, 3..."
        );
        expect_message(&mut sub, &format!("g|{n}"), "bump").await;
    }
    assert_eq!(
        s.get(&k).await.unwrap().as_deref(),
        Some(&b"3"[..]),
        "bump: the generation reads back as decimal text"
    );
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (s, k, channel) = (s.clone(), k.clone(), channel.clone());
        tasks.spawn(async move { s.bump(&k, long, notify(&channel, "g|")).await.unwrap() });
    }
    let got: BTreeSet<u64> = tasks.join_all().await.into_iter().collect();
    assert_eq!(
        got,
        (4..=23).collect(),
        "bump: 20 concurrent bumps return 4..=23"
    );

    // The ttl runs from each bump (a generation in use never expires), then it goes.
    let k = key("brief-generation");
    let ttl = Duration::from_millis(250);
    let quiet = |n| {
        let (s, k) = (s.clone(), k.clone());
        async move {
            let c = key("quiet");
            assert_eq!(s.bump(&k, ttl, notify(&c, "")).await.unwrap(), n);
        }
    };
    quiet(1).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    quiet(2).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    quiet(3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    quiet(1).await;

    let text = key("text");
    s.set(&text, Bytes::from_static(b"abc"), long)
        .await
        .unwrap();
    assert_eq!(
        s.bump(&text, long, notify(&channel, "g|"))
            .await
            .map_err(|e| e.kind()),
        Err(StoreErrorKind::Protocol),
        "bump of a non-integer fails as a protocol error"
    );
}
