//! The fleet cache across real OS processes on a real `redis-server` (and a real 3-master Redis
//! Cluster): this test binary re-executed as workers ([`stitch_tests::fleet::Worker`]), each one
//! runtime driven over its stdin, calling a counting loopback upstream in the parent process.
//! The in-process twin of these tests (several runtimes on one `MemoryStore`) is `fleet_cache.rs`.
//!
//! Each worker binds its outgoing HTTP connections to its own loopback address (`127.0.0.10+i`),
//! so the upstream knows which process sent a request (the one to SIGKILL, for the leader test)
//! without anything in the request that would enter the cache key.
//!
//! The tests of this file run one at a time ([`SERIAL`]): each one loads both cores, and the
//! latency bounds (10 ms for an invalidation, 50 ms of slack for a takeover) must not share them
//! with another test's fleet.

use axum::extract::ConnectInfo;
use serde_json::json;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stitch::Runtime;
use stitch_tests::fleet::{self, answer, percentile, unix_us, Cluster, Redis, Worker};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Shared {
    #[stitch(get, path = "/users/{id}", cache = "1m")]
    async fn user(&self, id: u64) -> stitch::Result<serde_json::Value>;

    /// The upstream holds it 300 ms: a flight long enough to invalidate during.
    #[stitch(get, path = "/slow/{id}", cache = "1m")]
    async fn slow(&self, id: u64) -> stitch::Result<serde_json::Value>;

    /// Cached per principal: the bearer token is a credential header.
    #[stitch(get, path = "/me", cache = "1m")]
    async fn me(&self, #[header("authorization")] token: &str)
        -> stitch::Result<serde_json::Value>;
}

/// One fleet test at a time (see the module docs); a tokio mutex, as it is held across awaits.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Set in a worker's environment: `store spec|base url|index|fill lease ms|timeout ms`, then
/// optionally `|store timeout ms`.
const WORKER: &str = "STITCH_FLEET_CACHE_WORKER";

// --- The upstream -----------------------------------------------------------------------------

/// One request as the upstream saw it.
#[derive(Clone)]
struct Arrival {
    /// The worker that sent it (from its source address), 255 when unknown.
    worker: u8,
    path: String,
    at_us: u64,
}

/// A counting loopback upstream: answers `{"n": <requests for this path so far>, "for": <the
/// authorization header>}` after a delay chosen by path.
struct Upstream {
    url: String,
    log: Arc<Mutex<Vec<Arrival>>>,
    /// Every arrival as it happens, for a test that acts on the first one.
    arrivals: tokio::sync::mpsc::UnboundedReceiver<Arrival>,
}

impl Upstream {
    /// `/users/..` answer after `users`, `/slow/..` after 300 ms, `/me` after 50 ms.
    async fn start(users: Duration) -> Upstream {
        let log: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let (tx, arrivals) = tokio::sync::mpsc::unbounded_channel();
        let record = log.clone();
        let app = axum::Router::new().fallback(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, request: axum::extract::Request| {
                let (log, tx) = (record.clone(), tx.clone());
                async move {
                    let path = request.uri().path().to_owned();
                    let auth = request
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    let worker = match peer.ip() {
                        IpAddr::V4(v4) if v4.octets()[3] >= 10 => v4.octets()[3] - 10,
                        _ => 255,
                    };
                    let arrival = Arrival {
                        worker,
                        path: path.clone(),
                        at_us: unix_us(),
                    };
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(arrival.clone());
                        log.iter().filter(|a| a.path == path).count()
                    };
                    let _ = tx.send(arrival);
                    let delay = if path.starts_with("/slow/") {
                        Duration::from_millis(300)
                    } else if path == "/me" {
                        Duration::from_millis(50)
                    } else {
                        users
                    };
                    tokio::time::sleep(delay).await;
                    axum::Json(json!({ "n": n, "for": auth }))
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Upstream { url, log, arrivals }
    }

    /// Requests received for `path`.
    fn count(&self, path: &str) -> usize {
        self.of(path).len()
    }

    fn of(&self, path: &str) -> Vec<Arrival> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|a| a.path == path).cloned().collect()
    }
}

// --- The worker side --------------------------------------------------------------------------

/// A worker process: one runtime on the shared store, answering the parent's commands (each on
/// its own task, so a long call does not hold the next command).
async fn worker(spec: &str) {
    // The worker's counters (degraded decisions, store errors, fleet events) for failure messages.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let counters = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");
    let f: Vec<&str> = spec.split('|').collect();
    let index: u8 = f[2].parse().unwrap();
    let ms = |s: &str| Duration::from_millis(s.parse().unwrap());
    let http = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + index)))
        .build()
        .unwrap();
    let store_timeout = f.get(5).map(|t| ms(t));
    let mut store = fleet::connect(f[0]).await;
    let mut rt = Runtime::builder();
    if let Some(t) = store_timeout {
        store = store.with_timeout(t);
        rt = rt.store_timeout(t);
    }
    let rt = rt
        .http_client(http)
        .base_url(f[1])
        .store(store)
        // The same secret in every process: the same credential is the same principal.
        .principal_key([7; 32])
        .fill_lease(ms(f[3]))
        .timeout(ms(f[4]))
        .build()
        .unwrap();
    let api = SharedClient::new(&rt).unwrap();
    answer("ready");
    let mut commands = fleet::commands();
    while let Some(line) = commands.recv().await {
        if line == "metrics" {
            let mut seen: Vec<String> = counters
                .snapshot()
                .into_vec()
                .into_iter()
                .filter(|(k, ..)| !k.key().name().starts_with("stitch_call"))
                .map(|(k, _, _, v)| {
                    let labels: Vec<String> =
                        k.key().labels().map(|l| l.value().to_owned()).collect();
                    format!("{}{{{}}}={v:?}", k.key().name(), labels.join(","))
                })
                .collect();
            seen.sort();
            answer(&format!("metrics {}", seen.join(" ")));
            continue;
        }
        let (rt, api) = (rt.clone(), api.clone());
        tokio::spawn(async move { run(&rt, &api, &line).await });
    }
}

async fn sleep_until_unix(at_us: u64) {
    tokio::time::sleep(Duration::from_micros(at_us.saturating_sub(unix_us()))).await;
}

fn n_of(value: &serde_json::Value) -> u64 {
    value["n"].as_u64().unwrap_or(0)
}

async fn run(rt: &Runtime, api: &SharedClient, line: &str) {
    let w: Vec<&str> = line.split(' ').collect();
    match w[..] {
        // `burst <id> <callers> <start µs>`: that many concurrent `user(id)` calls at the start.
        ["burst", id, callers, start] => {
            let (id, callers): (u64, usize) = (id.parse().unwrap(), callers.parse().unwrap());
            sleep_until_unix(start.parse().unwrap()).await;
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..callers {
                let api = api.clone();
                set.spawn(async move {
                    let began = unix_us();
                    let r = api.user(id).await;
                    (began, unix_us(), r)
                });
            }
            let (mut ok, mut errors, mut error) = (0, 0, String::from("-"));
            let (mut began, mut done, mut slowest) = (u64::MAX, 0, 0);
            let mut values = BTreeSet::new();
            while let Some(joined) = set.join_next().await {
                let (b, d, r) = joined.unwrap();
                (began, done, slowest) = (began.min(b), done.max(d), slowest.max(d - b));
                match r {
                    Ok(v) => {
                        ok += 1;
                        values.insert(n_of(&v));
                    }
                    Err(e) => {
                        errors += 1;
                        error = e.to_string();
                    }
                }
            }
            let values: Vec<String> = values.iter().map(u64::to_string).collect();
            answer(&format!(
                "burst {ok} {errors} {slowest} {began} {done} {} {error}",
                values.join(",")
            ));
        }
        // `call user|slow <id>`: one call; its `n` (or `err`) and latency.
        ["call", which, id] => {
            let id = id.parse().unwrap();
            let began = unix_us();
            let r = if which == "slow" {
                api.slow(id).await
            } else {
                api.user(id).await
            };
            let took = unix_us() - began;
            match r {
                Ok(v) => answer(&format!("call {} {took}", n_of(&v))),
                Err(e) => answer(&format!("call err {took} {e}")),
            }
        }
        // `inv exact|exact-slow <id>`, `inv stitch`, `inv all`: the time it was issued.
        ["inv", kind, ref rest @ ..] => {
            let t0 = unix_us();
            match (kind, rest) {
                ("exact", [id]) => {
                    stitch::invalidate(api.user(id.parse().unwrap())).await;
                }
                ("exact-slow", [id]) => {
                    stitch::invalidate(api.slow(id.parse().unwrap())).await;
                }
                ("stitch", []) => rt.invalidate_stitch(SharedClient::USER),
                ("all", []) => rt.invalidate_all(),
                _ => panic!("unknown invalidation {line}"),
            }
            answer(&format!("inv {t0}"));
        }
        // `watch`: answers at once with the in-process entries of `user`, then again with the
        // time they were first seen gone (polled every 50 µs on a thread of its own).
        ["watch"] => {
            let rt = rt.clone();
            answer(&format!(
                "watching {}",
                rt.cached_entries(SharedClient::USER)
            ));
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while rt.cached_entries(SharedClient::USER) > 0 {
                    if std::time::Instant::now() > deadline {
                        return answer("gone never");
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                answer(&format!("gone {}", unix_us()));
            });
        }
        // `me <start µs> <token,token,..>`: one concurrent `me(token)` per listed token.
        ["me", start, tokens] => {
            sleep_until_unix(start.parse().unwrap()).await;
            let mut set = tokio::task::JoinSet::new();
            for token in tokens.split(',') {
                let (api, token) = (api.clone(), format!("Bearer {token}"));
                set.spawn(async move { (api.me(&token).await, token) });
            }
            let (mut ok, mut foreign, mut errors, mut problem) = (0, 0, 0, String::from("-"));
            while let Some(joined) = set.join_next().await {
                match joined.unwrap() {
                    (Ok(v), token) if v["for"] == token.as_str() => ok += 1,
                    (Ok(v), token) => {
                        foreign += 1;
                        problem = format!("{token} got {}", v["for"]);
                    }
                    (Err(e), _) => {
                        errors += 1;
                        problem = e.to_string();
                    }
                }
            }
            answer(&format!("me {ok} {foreign} {errors} {problem}"));
        }
        _ => panic!("unknown command {line}"),
    }
}

// --- The parent side --------------------------------------------------------------------------

/// Spawns `count` workers of `test` on `store` and waits until each is connected.
async fn workers(
    test: &str,
    count: u8,
    store: &str,
    up: &Upstream,
    lease: Duration,
    timeout: Duration,
) -> Vec<Worker> {
    let mut workers: Vec<Worker> = (0..count)
        .map(|i| {
            let spec = format!(
                "{store}|{}|{i}|{}|{}",
                up.url,
                lease.as_millis(),
                timeout.as_millis()
            );
            Worker::spawn(test, WORKER, &spec)
        })
        .collect();
    for w in &mut workers {
        assert_eq!(w.recv().await, "ready");
    }
    // One call each first: a process's fleet tier is live once its event subscription is (the
    // callers racing the first one meanwhile use the in-process tier alone, by design: see
    // `FleetCache::subscribed`), and the tests are about running processes.
    // (A stitch the tests do not watch.)
    for w in &mut workers {
        call(w, "slow", 0).await;
    }
    workers
}

/// A burst's answer.
#[derive(Debug)]
struct Burst {
    ok: usize,
    errors: usize,
    slowest: Duration,
    /// When its first call began, unix µs.
    began: u64,
    /// When its last call returned, unix µs.
    done: u64,
    /// The distinct `n` values the calls got.
    values: Vec<u64>,
    error: String,
}

fn burst(answer: &str) -> Burst {
    let f: Vec<&str> = answer.splitn(8, ' ').collect();
    assert_eq!(f[0], "burst", "{answer}");
    Burst {
        ok: f[1].parse().unwrap(),
        errors: f[2].parse().unwrap(),
        slowest: Duration::from_micros(f[3].parse().unwrap()),
        began: f[4].parse().unwrap(),
        done: f[5].parse().unwrap(),
        values: f[6].split(',').filter_map(|v| v.parse().ok()).collect(),
        error: f.get(7).unwrap_or(&"").to_string(),
    }
}

/// Every worker bursts `callers` calls of `user(id)` at a common start 200 ms ahead.
async fn burst_all(workers: &mut [Worker], id: u64, callers: usize) -> Vec<Burst> {
    let start = unix_us() + 200_000;
    for w in workers.iter_mut() {
        w.send(&format!("burst {id} {callers} {start}"));
    }
    let mut bursts = Vec::new();
    for w in workers.iter_mut() {
        bursts.push(burst(&w.recv().await));
    }
    bursts
}

/// `call user|slow <id>` on one worker: the `n` it got.
async fn call(w: &mut Worker, which: &str, id: u64) -> u64 {
    let a = w.ask(&format!("call {which} {id}")).await;
    let f: Vec<&str> = a.split(' ').collect();
    f[1].parse()
        .unwrap_or_else(|_| panic!("call {which} {id} failed: {a}"))
}

const USERS_FETCH: Duration = Duration::from_millis(400);

/// 8 processes × 50 concurrent callers miss the same cold key together, in 5 rounds: one
/// upstream request per round, one value for everyone; then a value one process fetched is a
/// hit in another.
async fn stampede(test: &str, store: &str) {
    let up = Upstream::start(USERS_FETCH).await;
    let mut workers = workers(
        test,
        8,
        store,
        &up,
        Duration::from_secs(3),
        Duration::from_secs(10),
    )
    .await;
    for round in 1..=5u64 {
        let bursts = burst_all(&mut workers, round, 50).await;
        let path = format!("/users/{round}");
        let arrivals = up.of(&path);
        if arrivals.len() != 1 {
            for w in workers.iter_mut() {
                println!("{}", w.ask("metrics").await);
            }
        }
        assert_eq!(
            arrivals.len(),
            1,
            "round {round}: {} upstream requests for 8 processes × 50 callers: {:?}",
            arrivals.len(),
            arrivals
                .iter()
                .map(|a| (a.worker, a.at_us - arrivals[0].at_us))
                .collect::<Vec<_>>()
        );
        // Everyone missed together: every process's first call began before the one fetch
        // answered (a process starting later would only show a hit).
        let answered = arrivals[0].at_us + USERS_FETCH.as_micros() as u64;
        for (i, b) in bursts.iter().enumerate() {
            assert_eq!(
                (b.ok, b.errors),
                (50, 0),
                "round {round}, worker {i}: {}",
                b.error
            );
            assert_eq!(
                b.values,
                [1],
                "round {round}, worker {i}: one value for all"
            );
            assert!(
                b.began < answered,
                "round {round}, worker {i} began {} µs after the fetch answered",
                b.began - answered
            );
        }
        let slowest = bursts.iter().map(|b| b.slowest).max().unwrap();
        println!("round {round}: 1 request for 400 calls, slowest call {slowest:?}");
    }
    // Fetched by one process, a hit in another (and in a third): no second request.
    assert_eq!(call(&mut workers[0], "user", 100).await, 1);
    assert_eq!(call(&mut workers[5], "user", 100).await, 1);
    assert_eq!(call(&mut workers[7], "user", 100).await, 1);
    assert_eq!(
        up.count("/users/100"),
        1,
        "a shared entry was fetched again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_missing_one_cold_key_send_one_request_per_round() {
    const NAME: &str = "eight_processes_missing_one_cold_key_send_one_request_per_round";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let redis = Redis::start(&[]);
    stampede(NAME, &redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_a_redis_cluster_send_one_request_per_cold_key() {
    const NAME: &str = "eight_processes_on_a_redis_cluster_send_one_request_per_cold_key";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start();
    stampede(NAME, &cluster.spec()).await;
}

/// The process whose request reached the upstream first is SIGKILLed mid-fetch: one waiting
/// process takes the lease over when it expires and fetches; nobody else asks the upstream, and
/// every caller of the surviving processes is served within lease + fetch + 50 ms of its call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_fetch_is_replaced_within_its_lease() {
    const NAME: &str = "a_leader_killed_mid_fetch_is_replaced_within_its_lease";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let redis = Redis::start(&[]);
    let lease = Duration::from_millis(500);
    let mut up = Upstream::start(USERS_FETCH).await;
    let mut workers = workers(NAME, 4, &redis.url(), &up, lease, Duration::from_secs(10)).await;
    let start = unix_us() + 200_000;
    for w in workers.iter_mut() {
        w.send(&format!("burst 1 20 {start}"));
    }
    let first = loop {
        let a = up.arrivals.recv().await.expect("a request");
        if a.path == "/users/1" {
            break a;
        }
    };
    let leader = usize::from(first.worker);
    assert!(leader < workers.len(), "the request came from a worker");
    workers[leader].kill();
    let killed = unix_us();
    println!(
        "killed worker {leader} {} µs after its request arrived",
        killed - first.at_us
    );
    let bound = lease + USERS_FETCH + Duration::from_millis(50);
    for (i, w) in workers.iter_mut().enumerate() {
        if i == leader {
            continue;
        }
        let b = burst(&w.recv().await);
        assert_eq!((b.ok, b.errors), (20, 0), "worker {i}: {}", b.error);
        assert_eq!(b.values.len(), 1, "worker {i}: one value for all");
        println!(
            "worker {i}: slowest call {:?}, done {:?} after the kill",
            b.slowest,
            Duration::from_micros(b.done.saturating_sub(killed))
        );
        assert!(
            b.slowest <= bound,
            "worker {i}: a caller waited {:?} (bound: lease + fetch + 50 ms = {bound:?})",
            b.slowest
        );
    }
    let arrivals = up.of("/users/1");
    assert!(
        arrivals.len() <= 2,
        "{} upstream requests after the leader died",
        arrivals.len()
    );
    assert_eq!(
        arrivals.len(),
        2,
        "a survivor fetched once the lease expired"
    );
    assert_ne!(usize::from(arrivals[1].worker), leader);
}

/// A leader dropped while its claim is still in the store (held there by `CLIENT PAUSE WRITE`,
/// which holds scripts): with callers of its process waiting, the flight goes on without it,
/// and with nobody waiting the lease its claim took is given back. Either way another process
/// waiting on the key is served without waiting out that lease (3 s), and the fleet sends one
/// upstream request per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_dropped_during_its_claim_strands_no_one() {
    const NAME: &str = "a_leader_dropped_during_its_claim_strands_no_one";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let redis = Redis::start(&[]);
    let (lease, store_timeout) = (Duration::from_secs(3), Duration::from_secs(2));
    let up = Upstream::start(Duration::from_millis(100)).await;
    // The other process: its claim waits out the pause (a store timeout longer than it).
    let spec = format!(
        "{}|{}|0|{}|10000|{}",
        redis.url(),
        up.url,
        lease.as_millis(),
        store_timeout.as_millis()
    );
    let mut other = Worker::spawn(NAME, WORKER, &spec);
    assert_eq!(other.recv().await, "ready");
    call(&mut other, "slow", 0).await;
    // This process, whose leader can be dropped at a chosen moment.
    let rt = Runtime::builder()
        .base_url(&up.url)
        .store(
            fleet::connect(&redis.url())
                .await
                .with_timeout(store_timeout),
        )
        .store_timeout(store_timeout)
        .principal_key([7; 32])
        .fill_lease(lease)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let api = SharedClient::new(&rt).unwrap();
    api.slow(0).await.unwrap(); // subscribed and synced
    let pause = Duration::from_millis(400);

    for (id, followers) in [(1u64, 5usize), (2, 0)] {
        let began = std::time::Instant::now();
        redis.cli(&["CLIENT", "PAUSE", &pause.as_millis().to_string(), "WRITE"]);
        let leader = {
            let api = api.clone();
            tokio::spawn(async move { api.user(id).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting: Vec<_> = (0..followers)
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move { api.user(id).await })
            })
            .collect();
        other.send(&format!("call user {id}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            rt.requests_in_flight(),
            1,
            "id {id}: the leader is still claiming (the pause holds its claim)"
        );
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        for w in waiting {
            let value = w.await.unwrap().unwrap();
            assert_eq!(
                n_of(&value),
                1,
                "id {id}: a follower got the one fetch's value"
            );
        }
        let answer = other.recv().await;
        let f: Vec<&str> = answer.split(' ').collect();
        assert_eq!(
            f[1], "1",
            "id {id}: the other process got the one value: {answer}"
        );
        let took = began.elapsed();
        println!("id {id}, {followers} followers: everyone served {took:?} after the pause began");
        assert!(
            took < pause + Duration::from_secs(1),
            "id {id}: served {took:?} after the pause began: someone waited out the lease"
        );
        assert_eq!(
            up.count(&format!("/users/{id}")),
            1,
            "id {id}: one request for the fleet"
        );
    }
}

/// Entries of `user(id)` in both workers' in-process tiers, then `b` watches while `a`
/// invalidates with `kind`: the time from the call on `a` to `b`'s tier being empty.
async fn invalidation_sample(
    a: &mut Worker,
    b: &mut Worker,
    up: &Upstream,
    id: u64,
    kind: &str,
) -> Duration {
    let n = call(a, "user", id).await;
    assert_eq!(call(b, "user", id).await, n, "b reads a's entry");
    assert_eq!(up.count(&format!("/users/{id}")), 1, "b's read was a hit");
    let watching = b.ask("watch").await;
    assert!(watching != "watching 0", "b holds the entry in-process");
    let command = match kind {
        "exact" => format!("inv exact {id}"),
        other => format!("inv {other}"),
    };
    let issued: u64 = a.ask(&command).await["inv ".len()..].parse().unwrap();
    let gone = b.recv().await;
    let seen: u64 = gone["gone ".len()..]
        .parse()
        .unwrap_or_else(|_| panic!("{kind}: b's entry never went ({gone})"));
    Duration::from_micros(seen.saturating_sub(issued))
}

/// Exact, whole-stitch and whole-runtime invalidations issued on one process empty another
/// process's in-process tier within 10 ms at the 99th percentile (100 samples each); an exact
/// invalidation issued on one process while another fetches the key wins over the value that
/// fetch lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_another_process_within_10_ms_and_win_over_a_flight() {
    const NAME: &str = "invalidations_reach_another_process_within_10_ms_and_win_over_a_flight";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let redis = Redis::start(&[]);
    let up = Upstream::start(Duration::ZERO).await;
    let mut ws = workers(
        NAME,
        2,
        &redis.url(),
        &up,
        Duration::from_secs(3),
        Duration::from_secs(10),
    )
    .await;
    let (a, b) = ws.split_at_mut(1);
    let (a, b) = (&mut a[0], &mut b[0]);
    let mut id = 1000;
    let mut failures = Vec::new();
    for kind in ["exact", "stitch", "all"] {
        let mut samples = Vec::new();
        for _ in 0..100 {
            id += 1;
            samples.push(invalidation_sample(a, b, &up, id, kind).await);
        }
        samples.sort();
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        println!(
            "{kind}: issued on one process → gone from another's in-process tier: p50 {p50:?}, \
             p99 {p99:?}, max {:?} ({} samples)",
            samples[samples.len() - 1],
            samples.len()
        );
        if p99 > Duration::from_millis(10) {
            failures.push(format!("{kind}: p99 {p99:?} > 10 ms"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");

    // An invalidation during a flight wins: `a` fetches (300 ms), `b` invalidates meanwhile.
    a.send("call slow 1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.ask("inv exact-slow 1").await;
    let landed = a.recv().await;
    assert!(
        landed.starts_with("call 1 "),
        "the caller in flight is answered: {landed}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        call(b, "slow", 1).await,
        2,
        "the landed value was stored for the fleet"
    );
    assert_eq!(
        call(a, "slow", 1).await,
        2,
        "the landed value was kept in-process"
    );
    assert_eq!(up.count("/slow/1"), 2);
}

/// The subscriber connections are killed (`CLIENT KILL TYPE pubsub`): every process flushes its
/// in-process tier within the bound `cache/fleet.rs` states (3 s; in practice at once: the
/// connection's end is seen), and the shared tier serves again. Then Redis is SIGKILLed: calls
/// keep working from the upstream (no error, none near its timeout), coalescing per process; and
/// once Redis is restarted on the same port the fleet coalesces again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_flushes_and_a_restarted_redis_coalesces_again() {
    const NAME: &str = "a_killed_subscription_flushes_and_a_restarted_redis_coalesces_again";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let mut redis = Redis::start(&[]);
    let fetch = Duration::from_millis(200);
    let timeout = Duration::from_secs(2);
    let up = Upstream::start(fetch).await;
    let mut ws = workers(NAME, 4, &redis.url(), &up, Duration::from_secs(1), timeout).await;

    // Subscriber connections killed.
    for w in ws.iter_mut() {
        assert_eq!(call(w, "user", 1).await, 1);
    }
    assert_eq!(up.count("/users/1"), 1);
    for w in ws.iter_mut() {
        assert_eq!(w.ask("watch").await, "watching 1");
    }
    let killed_at = unix_us();
    let killed: usize = redis
        .cli(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .parse()
        .unwrap();
    assert_eq!(killed, 4, "one subscriber connection per process");
    let bound = Duration::from_secs(3);
    for (i, w) in ws.iter_mut().enumerate() {
        let gone = w.recv().await;
        let at: u64 = gone["gone ".len()..]
            .parse()
            .unwrap_or_else(|_| panic!("worker {i} kept its in-process entry ({gone})"));
        let after = Duration::from_micros(at.saturating_sub(killed_at));
        println!("worker {i}: in-process tier flushed {after:?} after CLIENT KILL");
        assert!(
            after <= bound,
            "worker {i}: flushed after {after:?} (bound {bound:?})"
        );
    }
    // The shared tier serves again (the entry is still in Redis: no request).
    for w in ws.iter_mut() {
        assert_eq!(call(w, "user", 1).await, 1);
    }
    assert_eq!(
        up.count("/users/1"),
        1,
        "the shared entry was fetched again"
    );

    // Redis SIGKILLed: per-process coalescing, no call fails or nears its timeout.
    redis.kill();
    for id in [2, 3] {
        let bursts = burst_all(&mut ws, id, 20).await;
        for (i, b) in bursts.iter().enumerate() {
            assert_eq!(
                (b.ok, b.errors),
                (20, 0),
                "Redis down, worker {i}: {}",
                b.error
            );
            assert!(
                b.slowest < fetch + Duration::from_secs(1),
                "Redis down, worker {i}: a call took {:?} (timeout {timeout:?})",
                b.slowest
            );
        }
        let slowest = bursts.iter().map(|b| b.slowest).max().unwrap();
        let requests = up.count(&format!("/users/{id}"));
        println!(
            "Redis down: {requests} requests for 4 processes × 20 callers, slowest {slowest:?}"
        );
        assert_eq!(requests, 4, "one request per process while Redis is down");
    }

    // Restarted (empty) on the same port: the fleet coalesces again.
    redis.restart();
    let restarted = std::time::Instant::now();
    let mut id = 10;
    let recovered = loop {
        id += 1;
        let bursts = burst_all(&mut ws, id, 20).await;
        for (i, b) in bursts.iter().enumerate() {
            assert_eq!(
                (b.ok, b.errors),
                (20, 0),
                "recovering, worker {i}: {}",
                b.error
            );
        }
        if up.count(&format!("/users/{id}")) == 1 {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "not coalescing across processes 10 s after Redis returned"
        );
    };
    println!("coalescing across processes again {recovered:?} after the restart");
    for _ in 0..2 {
        id += 1;
        burst_all(&mut ws, id, 20).await;
        assert_eq!(
            up.count(&format!("/users/{id}")),
            1,
            "coalescing again after recovery"
        );
    }
}

/// Bearer tokens spread at random over 4 processes on one store: every answer is the caller's
/// own (the upstream echoes the header), and each principal's entry is fetched once for the
/// whole fleet.
async fn principals(test: &str, store: &str) {
    let up = Upstream::start(Duration::ZERO).await;
    let mut ws = workers(
        test,
        4,
        store,
        &up,
        Duration::from_secs(3),
        Duration::from_secs(10),
    )
    .await;
    let tokens: Vec<String> = (0..8).map(|i| format!("token-{i}")).collect();
    let seed = unix_us() | 1;
    println!("principal spread seed {seed:#x}");
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let start = unix_us() + 200_000;
    for w in ws.iter_mut() {
        let mine: Vec<&str> = (0..60)
            .map(|_| tokens[(next() % 8) as usize].as_str())
            .collect();
        w.send(&format!("me {start} {}", mine.join(",")));
    }
    for (i, w) in ws.iter_mut().enumerate() {
        let a = w.recv().await;
        let f: Vec<&str> = a.splitn(5, ' ').collect();
        assert_eq!(f[0], "me", "{a}");
        assert_eq!(
            f[2], "0",
            "worker {i} was served another principal's entry: {}",
            f[4]
        );
        assert_eq!(f[3], "0", "worker {i}: errors: {}", f[4]);
        assert_eq!(f[1], "60", "{a}");
    }
    let requests = up.count("/me");
    assert!(
        requests <= tokens.len(),
        "{requests} requests for {} principals",
        tokens.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_spread_over_four_processes_never_read_each_others_entries() {
    const NAME: &str = "principals_spread_over_four_processes_never_read_each_others_entries";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let redis = Redis::start(&[]);
    principals(NAME, &redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_on_a_redis_cluster_never_read_each_others_entries() {
    const NAME: &str = "principals_on_a_redis_cluster_never_read_each_others_entries";
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start();
    principals(NAME, &cluster.spec()).await;
}
