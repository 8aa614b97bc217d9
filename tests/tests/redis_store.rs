//! The Redis driver against real `redis-server` processes started here on free ports (never
//! 6379): the conformance suite, GCRA on server time, timeouts, NOSCRIPT reloads, subscription
//! gaps, and a 3-master Redis Cluster.
//!
//! `redis-server` and `redis-cli` must be on the PATH (CI installs the `redis-server` package);
//! without them these tests fail, saying so, rather than skip.

use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch::store::{
    conformance, keys, Decision, Event, Gcra, OpId, RedisStore, Store, StoreErrorKind,
};
use stitch_tests::fleet::{free_port, Cluster, Redis};

async fn connect(server: &Redis) -> RedisStore {
    RedisStore::connect(&server.url()).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let server = Redis::start(&[]);
    let store = connect(&server).await;
    conformance::run(|| store.clone()).await;
}

/// Fill claims by the claim script alone (the driver's path on a server before Redis 7.0, which
/// refuses `SET .. NX .. GET`) keep every fill semantic too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_claiming_by_script_alone_passes_the_conformance_suite() {
    let server = Redis::start(&[]);
    let store = connect(&server).await.with_script_claims();
    conformance::run(|| store.clone()).await;
}

/// 100 reservations at 50/s from four connections (four "processes") get 100 distinct slots
/// exactly 20 ms apart on Redis `TIME`, spanning 1.98 s of server time from the first grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_slots_are_evenly_spaced_on_server_time() {
    let server = Redis::start(&[]);
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(connect(&server).await);
    }
    let key = keys::KeyLayout::new(Some("gcra-test")).budget_tat("api");
    let before = stores[0].time().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (store, key) = (stores[i % 4].clone(), key.clone());
        tasks.spawn(async move {
            let g = Gcra {
                interval_us: 20_000,
                tolerance_us: 0,
                max_wait_us: None,
                id: OpId::random(),
            };
            let r = store.reserve(&key, g).await.unwrap();
            match r.decision {
                Decision::Granted { at } | Decision::WaitUntil(at) => at,
                Decision::Refused { .. } => panic!("refused without a maximum wait: {r:?}"),
            }
        });
    }
    let slots: BTreeSet<u64> = tasks.join_all().await.into_iter().collect();
    let after = stores[0].time().await.unwrap();
    assert_eq!(slots.len(), 100, "distinct slots");
    let slots: Vec<u64> = slots.into_iter().collect();
    assert!(
        (before..=after).contains(&slots[0]),
        "the first slot is the server's now at the first reservation: {} not in {before}..={after}",
        slots[0]
    );
    assert!(
        slots.windows(2).all(|w| w[1] - w[0] == 20_000),
        "20 ms apart: {slots:?}"
    );
    assert_eq!(
        slots[99] - slots[0],
        1_980_000,
        "100 slots at 50/s span 1.98 s"
    );
}

/// The admitted bound is exact: with burst 3 at 50/s, the first second of server time holds
/// `burst + rate × 1 s` = 53 grants, and no window of one second holds more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcra_admits_exactly_burst_plus_rate_times_t() {
    let server = Redis::start(&[]);
    let store = connect(&server).await;
    let key = keys::KeyLayout::default().budget_tat("bound");
    let mut slots = Vec::new();
    for _ in 0..120 {
        let g = Gcra {
            interval_us: 20_000,
            tolerance_us: 3 * 20_000,
            max_wait_us: None,
            id: OpId::random(),
        };
        let r = store.reserve(&key, g).await.unwrap();
        slots.push(match r.decision {
            Decision::Granted { at } | Decision::WaitUntil(at) => at,
            Decision::Refused { .. } => unreachable!("no maximum wait"),
        });
    }
    let window = |start: u64| {
        slots
            .iter()
            .filter(|s| (start..start + 1_000_000).contains(s))
            .count()
    };
    assert_eq!(window(slots[0]), 53, "burst + rate × T in the first second");
    let most = slots.iter().map(|s| window(*s)).max().unwrap();
    assert_eq!(
        most, 53,
        "no one-second window holds more than burst + rate × T"
    );
}

/// A paused Redis answers nothing: operations fail as timeouts within the store's bound, then
/// work again by themselves once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_times_out_then_recovers() {
    let server = Redis::start(&[]);
    let store = connect(&server)
        .await
        .with_timeout(Duration::from_millis(100));
    store
        .set("k", Bytes::from_static(b"v"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(server.cli(&["CLIENT", "PAUSE", "800", "ALL"]), "OK");
    let started = Instant::now();
    let err = store
        .get("k")
        .await
        .expect_err("a paused server cannot answer");
    assert_eq!(err.kind(), StoreErrorKind::Timeout, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "bounded: {:?}",
        started.elapsed()
    );
    let g = Gcra {
        interval_us: 1000,
        tolerance_us: 0,
        max_wait_us: None,
        id: OpId::random(),
    };
    let err = store.reserve("stitch:{b:p}:tat", g).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Timeout);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        store.get("k").await.unwrap().as_deref(),
        Some(&b"v"[..]),
        "recovered"
    );
    // The reservation that timed out may or may not have run; its retry is answered once.
    let first = store.reserve("stitch:{b:p}:tat", g).await.unwrap();
    let again = store.reserve("stitch:{b:p}:tat", g).await.unwrap();
    let at = |d: Decision| match d {
        Decision::Granted { at } | Decision::WaitUntil(at) => at,
        Decision::Refused { .. } => unreachable!(),
    };
    assert_eq!(
        at(first.decision),
        at(again.decision),
        "a retried id keeps its slot"
    );
}

async fn next(sub: &mut stitch::store::Subscription) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event within 5 s")
}

/// Redis SIGKILLed mid-run: operations fail within their bound (no hang, no panic), and work
/// again by themselves within a second of a new server answering on the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_fails_fast_then_recovers_when_it_returns() {
    let mut server = Redis::start(&[]);
    let store = connect(&server)
        .await
        .with_timeout(Duration::from_millis(100));
    let ttl = Duration::from_secs(60);
    assert_eq!(
        store.increment("n", 1, ttl, OpId::random()).await.unwrap(),
        1
    );
    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store
            .increment("n", 1, ttl, OpId::random())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.kind(),
                StoreErrorKind::Unavailable | StoreErrorKind::Timeout
            ),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "bounded: {:?}",
            started.elapsed()
        );
    }
    server.restart();
    let back = Instant::now();
    loop {
        match store.increment("n", 1, ttl, OpId::random()).await {
            // A new empty server: the counter starts again.
            Ok(n) => {
                assert_eq!(n, 1);
                break;
            }
            Err(e) => assert!(
                back.elapsed() < Duration::from_secs(1),
                "not recovered: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let port = free_port();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .expect_err("no server");
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver's error is kept as the source"
    );
}

/// After `SCRIPT FLUSH` (as after a restart or failover) scripts are reloaded transparently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_a_flush() {
    let server = Redis::start(&[]);
    let store = connect(&server).await;
    let ttl = Duration::from_secs(60);
    assert_eq!(
        store.increment("c", 1, ttl, OpId::random()).await.unwrap(),
        1
    );
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(
        store.increment("c", 1, ttl, OpId::random()).await.unwrap(),
        2
    );
}

/// A subscription whose connection is killed reconnects and says messages may have been lost;
/// later messages arrive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_reports_a_gap_and_resumes() {
    let server = Redis::start(&[]);
    let store = connect(&server).await;
    let mut sub = store.subscribe("stitch:ev").await.unwrap();
    store
        .publish("stitch:ev", Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sub).await,
        Some(Event::Message(Bytes::from_static(b"1")))
    );
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, "1", "one subscriber connection killed");
    assert_eq!(
        next(&mut sub).await,
        Some(Event::Gap),
        "the loss is reported"
    );
    store
        .publish("stitch:ev", Bytes::from_static(b"2"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sub).await,
        Some(Event::Message(Bytes::from_static(b"2")))
    );
}

/// A TCP proxy to a local port whose open connections can be silenced: bytes are dropped both
/// ways and the sockets stay open (a half-open link: no FIN, no RST), while new connections pass.
struct Proxy {
    port: u16,
    generation: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = Arc::new(AtomicU64::new(0));
        let gen = generation.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let born = gen.load(Ordering::SeqCst);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, gen.clone(), born));
                tokio::spawn(pump(sr, cw, gen.clone(), born));
            }
        });
        Proxy { port, generation }
    }

    /// Every connection open now becomes a black hole.
    fn silence(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    generation: Arc<AtomicU64>,
    born: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if generation.load(Ordering::SeqCst) == born && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A subscription on a half-open connection (the link went silent without closing) notices by
/// its heartbeat, reconnects, reports the gap and receives again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscription_connection_is_detected_and_replaced() {
    let server = Redis::start(&[]);
    let proxy = Proxy::start(server.port()).await;
    let direct = connect(&server).await;
    let proxied = RedisStore::connect(&format!("redis://127.0.0.1:{}", proxy.port))
        .await
        .unwrap();
    let mut sub = proxied.subscribe("stitch:ev").await.unwrap();
    direct
        .publish("stitch:ev", Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sub).await,
        Some(Event::Message(Bytes::from_static(b"1")))
    );
    proxy.silence();
    direct
        .publish("stitch:ev", Bytes::from_static(b"lost"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sub).await,
        Some(Event::Gap),
        "the silent link is detected and the loss reported"
    );
    direct
        .publish("stitch:ev", Bytes::from_static(b"3"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sub).await,
        Some(Event::Message(Bytes::from_static(b"3")))
    );
}

/// A 3-master Redis Cluster created here: every script is single-slot (no `CROSSSLOT`), and the
/// conformance suite passes through the cluster client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_the_conformance_suite() {
    let cluster = Cluster::start();
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&urls)
        .await
        .expect("connect to the cluster")
        .with_timeout(Duration::from_secs(1));

    // The keys of one budget really are spread over several masters' slots across budgets,
    // and each budget's scripts work wherever its slot lives.
    let layout = keys::KeyLayout::new(Some("fleet"));
    for name in ["a", "b", "c", "d", "e", "f"] {
        let tat = layout.budget_tat(name);
        let g = Gcra {
            interval_us: 1000,
            tolerance_us: 0,
            max_wait_us: None,
            id: OpId::random(),
        };
        store.reserve(&tat, g).await.unwrap();
        let slot: u16 = cluster.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", &tat])
            .parse()
            .unwrap();
        assert_eq!(slot, keys::slot(&tat), "the layout's slot is Redis's");
    }
    conformance::run(|| store.clone()).await;
}
