//! Fleet throttles: runtimes attached to one store share one budget, against a real loopback
//! upstream counting what it receives. In one process on a `MemoryStore`, and across separate OS
//! processes (this test binary re-executed as workers) on a real `redis-server` with nginx's
//! `limit_req` as the referee.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stitch::store::{MemoryStore, Store, StoreFuture};
use stitch::{Error, Runtime};
use stitch_tests::fleet::{unix_us, Redis};
use stitch_tests::{saturate, Nginx, Reply, Upstream};

#[stitch::seam(base_url = "http://declared.invalid")]
trait Fleet {
    #[stitch(get, path = "/paced", throttle = "10/s")]
    async fn paced(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/capped", throttle(concurrency = 2))]
    async fn capped(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/one", throttle(concurrency = 1, max_wait = "300ms"))]
    async fn one(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/metered", throttle(rate = "20/s", concurrency = 4))]
    async fn metered(&self) -> stitch::Result<()>;

    /// Opted out of the fleet: each runtime paces its own 5/s.
    #[stitch(get, path = "/local-five", throttle(rate = "5/s", local))]
    async fn local_five(&self) -> stitch::Result<()>;

    #[stitch(get, path = "/fleet-five", throttle = "5/s")]
    async fn fleet_five(&self) -> stitch::Result<()>;
}

fn client(base: &str, store: &MemoryStore) -> FleetClient {
    let rt = Runtime::builder()
        .base_url(base)
        .store(store.clone())
        .build()
        .unwrap();
    FleetClient::new(&rt).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_on_one_store_share_one_rate_budget() {
    let up = Upstream::start(|_| Reply::status(200, "")).await;
    let store = MemoryStore::default();
    let (a, b) = (client(&up.url(), &store), client(&up.url(), &store));
    let run = |api: FleetClient| {
        saturate(4, Duration::from_secs(3), move || {
            let api = api.clone();
            async move { api.paced().await }
        })
    };
    // One start for both: a grant of either run counts from it.
    let started = Instant::now();
    let (ra, rb) = tokio::join!(run(a), run(b));
    let seconds = started.elapsed().as_secs_f64();
    let hits = up.hits() as f64;
    println!(
        "two runtimes: {hits} requests in {seconds:.2}s = {:.2}/s (declared 10/s)",
        hits / seconds
    );
    assert_eq!(f64::from(ra.accepted + rb.accepted), hits);
    // GCRA with burst 0: grants are 100 ms apart on the store's clock, all within the run, so at
    // most `burst + 1 + ⌊rate × T⌋` of them. Two independent limiters would send about twice that.
    assert!(
        hits <= 1.0 + (10.0 * seconds).floor(),
        "{hits} requests in {seconds:.2}s exceed one 10/s budget"
    );
    assert!(
        hits >= 0.9 * 10.0 * seconds,
        "{hits} requests in {seconds:.2}s: below 90% of the budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_throttle_stays_per_runtime_next_to_a_fleet_one() {
    let up = Upstream::start(|_| Reply::status(200, "")).await;
    let store = MemoryStore::default();
    let (a, b) = (client(&up.url(), &store), client(&up.url(), &store));
    let run = |api: FleetClient, local: bool| {
        saturate(3, Duration::from_secs(3), move || {
            let api = api.clone();
            async move {
                if local {
                    api.local_five().await
                } else {
                    api.fleet_five().await
                }
            }
        })
    };
    let started = tokio::time::Instant::now();
    let (la, lb, fa, fb) = tokio::join!(
        run(a.clone(), true),
        run(b.clone(), true),
        run(a, false),
        run(b, false)
    );
    // Each stitch's requests from the common start to its last arrival: every grant falls in that
    // span (the runs end with callers queued for a slot, so the wall time of all the runs would
    // undercount the rates).
    let seen = up.seen();
    let arrivals = |path: &str| {
        let at: Vec<_> = seen
            .iter()
            .filter(|s| s.path == path)
            .map(|s| s.at)
            .collect();
        let span = at.iter().max().unwrap().duration_since(started);
        (at.len() as f64, span.as_secs_f64())
    };
    let ((local, local_s), (fleet, fleet_s)) = (arrivals("/local-five"), arrivals("/fleet-five"));
    println!(
        "two runtimes: `local` 5/s sent {local} in {local_s:.2}s ({:.2}/s), fleet 5/s sent {fleet} \
         in {fleet_s:.2}s ({:.2}/s)",
        local / local_s,
        fleet / fleet_s
    );
    assert_eq!(f64::from(la.accepted + lb.accepted), local);
    assert_eq!(f64::from(fa.accepted + fb.accepted), fleet);
    // Two runtimes, each with its own 5/s budget: about 10/s together (each at most
    // `1 + ⌊5 T⌋` in any window `T`), twice the single budget.
    assert!(
        local <= 2.0 * (1.0 + (5.0 * local_s).floor()),
        "{local} `local` requests in {local_s:.2}s exceed two 5/s budgets"
    );
    assert!(
        local >= 0.9 * 10.0 * local_s,
        "{local} `local` requests in {local_s:.2}s: the budget was shared (below 9/s)"
    );
    // The fleet stitch next to it: one 5/s budget for both runtimes.
    assert!(
        fleet <= 1.0 + (5.0 * fleet_s).floor(),
        "{fleet} fleet requests in {fleet_s:.2}s exceed one 5/s budget"
    );
    assert!(
        fleet >= 0.9 * 5.0 * fleet_s,
        "{fleet} fleet requests in {fleet_s:.2}s: below 90% of the budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_capped_across_runtimes() {
    let up = Upstream::start(|_| Reply::status(200, "").after(Duration::from_millis(40))).await;
    let store = MemoryStore::default();
    let clients = [client(&up.url(), &store), client(&up.url(), &store)];
    let mut tasks: tokio::task::JoinSet<stitch::Result<()>> = tokio::task::JoinSet::new();
    for api in clients {
        for _ in 0..8 {
            let api = api.clone();
            tasks.spawn(async move {
                for _ in 0..3 {
                    api.capped().await?;
                }
                Ok(())
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(up.hits(), 48);
    let peak = up.peak_in_flight();
    assert!(
        peak <= 2,
        "{peak} requests in flight across runtimes, cap 2"
    );
    assert_eq!(peak, 2, "the cap is reached under load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_releases_its_fleet_lease() {
    let up = Upstream::start(|_| Reply::status(200, "").after(Duration::from_secs(20))).await;
    let store = MemoryStore::default();
    let (a, b) = (client(&up.url(), &store), client(&up.url(), &store));
    let held = tokio::spawn(async move { a.one().await });
    while up.hits() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another runtime cannot get the single slot while the call runs...
    match b.one().await {
        Err(Error::Throttled {
            would_wait: None, ..
        }) => {}
        other => panic!("expected Throttled (the fleet slot is taken), got {other:?}"),
    }
    // ...and gets it as soon as the call is dropped: the lease (TTL 10 s) is released, not left
    // to expire.
    held.abort();
    let _ = held.await;
    let t = Instant::now();
    let second = tokio::spawn(async move { b.one().await });
    while up.hits() < 2 {
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "the dropped call's lease was not released"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    second.abort();
}

/// A store of the first generation: `get`/`set`/`delete` only.
struct Basic(MemoryStore);

impl Store for Basic {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<bytes::Bytes>> {
        self.0.get(key)
    }
    fn set<'a>(&'a self, key: &'a str, value: bytes::Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        self.0.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.0.delete(key)
    }
}

#[test]
fn a_store_without_the_fleet_verbs_fails_the_build_unless_throttles_stay_local() {
    match Runtime::builder()
        .store(Basic(MemoryStore::default()))
        .build()
    {
        Err(Error::Config { stitch, reason }) => {
            assert_eq!(stitch, "runtime");
            assert_eq!(
                reason,
                "the attached store does not implement `reserve`, `lease`, `subscribe`, which \
                 fleet-wide throttles need: implement it in the store's driver (`MemoryStore` and \
                 `RedisStore` do), or keep throttles process-local with \
                 `Runtime::builder().local_throttles()`"
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    Runtime::builder()
        .store(Basic(MemoryStore::default()))
        .local_throttles()
        .build()
        .expect("process-local throttles need no store verb");
}

// --- Across OS processes, on Redis -------------------------------------------------------------

/// Set in the environment of a worker process: `redis url|base url|start (unix µs)|seconds`.
const WORKER: &str = "STITCH_FLEET_WORKER";
const PROCESSES: usize = 4;
const RUN: Duration = Duration::from_secs(5);

/// The worker's side: saturate the shared stitch from 8 tasks, report what happened.
async fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let (redis, base, start, seconds) = (parts[0], parts[1], parts[2], parts[3]);
    let store = stitch::store::RedisStore::connect(redis).await.unwrap();
    let rt = Runtime::builder()
        .base_url(base)
        .store(store)
        .build()
        .unwrap();
    let api = FleetClient::new(&rt).unwrap();
    let start: u64 = start.parse().unwrap();
    tokio::time::sleep(Duration::from_micros(start.saturating_sub(unix_us()))).await;
    let run = saturate(
        8,
        Duration::from_secs(seconds.parse().unwrap()),
        move || {
            let api = api.clone();
            async move { api.metered().await }
        },
    )
    .await;
    // The end on the wall clock: the coordinator measures every worker from the common start.
    println!(
        "FLEET_RESULT {} {} {}",
        run.accepted,
        run.rejected,
        unix_us()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_redis_share_one_budget_under_an_nginx_referee() {
    if let Ok(spec) = std::env::var(WORKER) {
        return worker(&spec).await;
    }
    let redis = Redis::start(&[]);
    let up = Upstream::start(|_| Reply::status(200, "")).await;
    let nginx = Nginx::rate_limited(&up.url(), 20).expect("start nginx");
    let start = unix_us() + 1_500_000;
    let spec = format!(
        "redis://127.0.0.1:{}|{}|{start}|{}",
        redis.port(),
        nginx.url(),
        RUN.as_secs()
    );
    let exe = std::env::current_exe().unwrap();
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "separate_processes_on_redis_share_one_budget_under_an_nginx_referee",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WORKER, &spec)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    let outputs = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("worker output"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let (mut accepted, mut rejected, mut end) = (0u32, 0u32, 0u64);
    for out in &outputs {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a worker failed: {text}");
        let line = text
            .lines()
            .find_map(|l| l.split_once("FLEET_RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no result from a worker: {text}"));
        let f: Vec<&str> = line.split(' ').collect();
        accepted += f[0].parse::<u32>().unwrap();
        rejected += f[1].parse::<u32>().unwrap();
        end = end.max(f[2].parse().unwrap());
    }
    // Every grant falls between the common start (workers sleep until then) and the last end.
    let seconds = end.saturating_sub(start) as f64 / 1e6;
    let rate = f64::from(accepted) / seconds;
    println!(
        "{PROCESSES} processes: {accepted} accepted, {rejected} rejected in {seconds:.2}s = \
         {rate:.2}/s (declared 20/s for the fleet)"
    );
    assert_eq!(
        rejected, 0,
        "nginx rejected {rejected}: the fleet exceeded 20/s"
    );
    assert_eq!(up.hits() as u32, accepted);
    assert!(
        f64::from(accepted) <= 1.0 + (20.0 * seconds).floor(),
        "{accepted} in {seconds:.2}s exceed one 20/s budget"
    );
    assert!(rate >= 0.95 * 20.0, "{rate:.2}/s: below 95% of 20/s");
}

/// Set in the environment of a lease-holding worker: `redis url|base url`.
const HOLDER: &str = "STITCH_FLEET_HOLDER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_gives_its_slot_back_within_the_lease_ttl() {
    if let Ok(spec) = std::env::var(HOLDER) {
        // The worker: hold the single fleet slot (a 1 s lease, renewed) until killed.
        let (redis, base) = spec.split_once('|').unwrap();
        let store = stitch::store::RedisStore::connect(redis).await.unwrap();
        let rt = Runtime::builder()
            .base_url(base)
            .store(store)
            .throttle_lease_ttl(Duration::from_secs(1))
            .build()
            .unwrap();
        let _ = FleetClient::new(&rt).unwrap().one().await;
        return;
    }
    let redis = Redis::start(&[]);
    let up = Upstream::start(|_| Reply::status(200, "").after(Duration::from_secs(30))).await;
    let url = redis.url();
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_killed_process_gives_its_slot_back_within_the_lease_ttl",
            "--exact",
            "--test-threads=1",
        ])
        .env(HOLDER, format!("{url}|{}", up.url()))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the holder");
    let started = Instant::now();
    while up.hits() < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the holder never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let store = stitch::store::RedisStore::connect(&url).await.unwrap();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .build()
        .unwrap();
    let api = FleetClient::new(&rt).unwrap();
    // Held past several renewals (every 333 ms): still taken.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        matches!(api.one().await, Err(Error::Throttled { .. })),
        "the other process holds the only slot"
    );
    holder.kill().expect("SIGKILL the holder");
    holder.wait().unwrap();
    let killed = Instant::now();
    let waiting = tokio::spawn(async move {
        loop {
            match api.one().await {
                Err(Error::Throttled { .. }) => continue,
                other => return other,
            }
        }
    });
    while up.hits() < 2 {
        assert!(
            killed.elapsed() < Duration::from_millis(2000),
            "the killed process's slot did not come back within its 1 s lease (+ re-check)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("slot back {:?} after the kill", killed.elapsed());
    waiting.abort();
}

/// Set in the environment of a worker that shuts down while holding leases: `redis url|base
/// url|shutdown` (`shutdown`: `yes` calls `Runtime::shutdown` before exiting, `no` just exits).
const SHUTDOWN_HOLDER: &str = "STITCH_FLEET_SHUTDOWN_HOLDER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_shuts_down_gives_its_leases_back_at_once() {
    if let Ok(spec) = std::env::var(SHUTDOWN_HOLDER) {
        // The worker: take both fleet slots of `capped` with calls that never end, shut down,
        // exit while they still run (as a worker does on SIGTERM).
        let parts: Vec<&str> = spec.split('|').collect();
        let store = stitch::store::RedisStore::connect(parts[0]).await.unwrap();
        let rt = Runtime::builder()
            .base_url(parts[1])
            .store(store)
            .throttle_lease_ttl(Duration::from_secs(4))
            .build()
            .unwrap();
        let api = FleetClient::new(&rt).unwrap();
        for _ in 0..2 {
            let api = api.clone();
            tokio::spawn(async move { api.capped().await });
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if parts[2] == "yes" {
            rt.shutdown().await;
        }
        println!("WORKER_EXITS");
        std::process::exit(0);
    }
    let redis = Redis::start(&[]);
    let up = Upstream::start(|_| Reply::status(200, "").after(Duration::from_secs(60))).await;
    let url = redis.url();
    let store = stitch::store::RedisStore::connect(&url).await.unwrap();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .build()
        .unwrap();
    let api = FleetClient::new(&rt).unwrap();
    // Without the shutdown the slots stay taken until the leases' TTL (4 s, renewed every 1.33 s,
    // so at least 2.67 s after the exit); with it, at once.
    for (round, shutdown) in [(1, "no"), (2, "yes")] {
        let before = up.hits();
        let worker = Command::new(std::env::current_exe().unwrap())
            .args([
                "a_process_that_shuts_down_gives_its_leases_back_at_once",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SHUTDOWN_HOLDER, format!("{url}|{}|{shutdown}", up.url()))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the holder");
        let out = tokio::task::spawn_blocking(move || worker.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let exited = Instant::now();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("WORKER_EXITS"),
            "round {round}: the worker failed"
        );
        assert_eq!(
            up.hits(),
            before + 2,
            "round {round}: the worker held both slots"
        );
        // Both slots, asked for at once by this process.
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move { api.capped().await })
            })
            .collect();
        while up.hits() < before + 4 && exited.elapsed() < Duration::from_millis(1500) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let back = exited.elapsed();
        println!("round {round} (shutdown: {shutdown}): both slots back {back:?} after the exit");
        if shutdown == "yes" {
            assert_eq!(
                up.hits(),
                before + 4,
                "the shut-down worker's slots did not come back"
            );
            assert!(
                back < Duration::from_millis(500),
                "slots back {back:?} after the exit: not at once"
            );
        } else {
            // The reference: a worker that just exits leaves its leases to expire.
            assert_eq!(
                up.hits(),
                before + 2,
                "a worker exiting without shutdown still holds its slots 1.5 s later"
            );
        }
        for c in calls {
            c.abort();
            let _ = c.await;
        }
        // This process's own calls were dropped: their leases are released (not shut down).
        tokio::time::sleep(Duration::from_millis(200)).await;
        if shutdown == "no" {
            // Let the first worker's leases expire before the second round.
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_throttled_calls_fast_and_recovery_is_automatic() {
    let mut redis = Redis::start(&[]);
    let up = Upstream::start(|_| Reply::status(200, "")).await;
    let url = redis.url();
    let store = stitch::store::RedisStore::connect(&url).await.unwrap();
    let rt = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .store_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let api = FleetClient::new(&rt).unwrap();
    api.paced().await.unwrap();
    redis.kill();
    let t = Instant::now();
    match api.paced().await {
        Err(Error::ThrottleUnavailable { .. }) => {}
        other => panic!("expected ThrottleUnavailable, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "bounded by the store timeout (one retry): {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert!(matches!(
        api.paced().await,
        Err(Error::ThrottleUnavailable { .. })
    ));
    assert!(
        t.elapsed() < Duration::from_millis(50),
        "right after a failure the store is not asked: {:?}",
        t.elapsed()
    );
    assert_eq!(up.hits(), 1, "never unthrottled: nothing was sent");
    // The same port, an empty server (scripts reloaded on NOSCRIPT).
    redis.restart();
    let back = Instant::now();
    loop {
        match api.paced().await {
            Ok(()) => break,
            Err(Error::ThrottleUnavailable { .. }) => {
                assert!(
                    back.elapsed() < Duration::from_millis(1500),
                    "not recovered {:?} after Redis returned",
                    back.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    println!("recovered {:?} after Redis returned", back.elapsed());
}

/// Set in the environment of a concurrency worker: `redis url|base url|start (unix µs)`.
const CAPPED: &str = "STITCH_FLEET_CAPPED";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_redis_never_exceed_the_concurrency_cap() {
    if let Ok(spec) = std::env::var(CAPPED) {
        let f: Vec<&str> = spec.split('|').collect();
        let store = stitch::store::RedisStore::connect(f[0]).await.unwrap();
        let rt = Runtime::builder()
            .base_url(f[1])
            .store(store)
            .build()
            .unwrap();
        let api = FleetClient::new(&rt).unwrap();
        let start: u64 = f[2].parse().unwrap();
        tokio::time::sleep(Duration::from_micros(start.saturating_sub(unix_us()))).await;
        let mut tasks: tokio::task::JoinSet<stitch::Result<()>> = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let api = api.clone();
            tasks.spawn(async move {
                for _ in 0..4 {
                    api.capped().await?;
                }
                Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        return;
    }
    let redis = Redis::start(&[]);
    let up = Upstream::start(|_| Reply::status(200, "").after(Duration::from_millis(30))).await;
    let spec = format!(
        "redis://127.0.0.1:{}|{}|{}",
        redis.port(),
        up.url(),
        unix_us() + 1_000_000
    );
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "separate_processes_on_redis_never_exceed_the_concurrency_cap",
                    "--exact",
                    "--test-threads=1",
                ])
                .env(CAPPED, &spec)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    let statuses = tokio::task::spawn_blocking(move || {
        children
            .into_iter()
            .map(|mut c| c.wait().expect("worker status"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(statuses.iter().all(|s| s.success()), "a worker failed");
    assert_eq!(up.hits(), PROCESSES * 16);
    let peak = up.peak_in_flight();
    println!("{PROCESSES} processes x 4 tasks: peak {peak} in flight (cap 2)");
    assert!(
        peak <= 2,
        "{peak} requests in flight across processes, cap 2"
    );
    assert_eq!(peak, 2, "the cap is reached under load");
}
