//! The fleet throttle on a real `redis-server` (started here on a free loopback port), measured
//! side by side in one run:
//!
//! 1. round trips per fleet acquire of a pacing-only stitch and of one with a rate and a
//!    concurrency cap (Redis `INFO commandstats` deltas);
//! 2. acquire throughput with 64 concurrent tasks (the driver's `reserve`, the one round trip a
//!    pacing acquire makes, and the fleet throttle's whole acquire) next to a raw redis-rs
//!    `EVALSHA` loop of the same script with the same arguments and a fresh marker per operation
//!    (so it does the same server work), alternating rounds, each run on an emptied server; and
//!    whole calls with the fleet throttle next to the in-process one;
//! 3. release-to-waiter wake-up latency across processes (a `concurrency = 1` budget handed
//!    between 4 worker processes, timed at the upstream);
//! 4. the achieved fleet rate of 4 processes against the declared one;
//! 5. the added latency per call while Redis is frozen (SIGSTOP) once the store breaker is open.
//!
//! Run: `cargo bench -p stitch-benches --bench fleet` (needs `redis-server` and `redis-cli` on the
//! PATH); `STITCH_BENCH_ONLY=1,2` runs only those sections. Worker processes are this binary
//! re-executed with `STITCH_BENCH_FLEET` set.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stitch::store::{Gcra, OpId, RedisStore, Store};
use stitch_tests::fleet::{percentile, unix_us, Redis};

#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Fleet {
    /// Pacing only, never waiting: the cost of the acquire itself. The burst matters: 64 tasks
    /// arriving together at `100000/s` without one are spaced 10 µs apart, and each wait is a
    /// tokio sleep rounded up to the millisecond (the raw loop it is compared with never waits;
    /// neither does its GCRA, with a 1 s tolerance).
    #[stitch(get, path = "/fast", throttle(rate = "100000/s", burst = 100000))]
    async fn fast(&self) -> stitch::Result<()>;

    /// A rate and a concurrency cap on one declaration, neither ever waiting: one lease and one
    /// slot per acquire.
    #[stitch(
        get,
        path = "/both",
        throttle(rate = "100000/s", burst = 100000, concurrency = 64)
    )]
    async fn both(&self) -> stitch::Result<()>;

    /// One slot for the whole fleet, handed from process to process.
    #[stitch(get, path = "/one/{who}", throttle(concurrency = 1))]
    async fn one(&self, who: u32) -> stitch::Result<()>;

    #[stitch(get, path = "/paced", throttle = "200/s")]
    async fn paced(&self) -> stitch::Result<()>;
}

/// Set in a worker's environment: `role|redis url|base url|who|until (unix µs)`.
const WORKER: &str = "STITCH_BENCH_FLEET";
const TASKS: usize = 64;
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(2);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Every request the upstream received: `(path, began, ended)`.
type Log = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

/// A loopback upstream answering 200 after `hold` and logging each request's span.
async fn upstream(hold: Duration) -> (String, Log) {
    let log: Log = Arc::default();
    let record = log.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let record = record.clone();
        async move {
            let began = Instant::now();
            if !hold.is_zero() {
                tokio::time::sleep(hold).await;
            }
            record
                .lock()
                .unwrap()
                .push((uri.path().to_owned(), began, Instant::now()));
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

async fn client(base: &str, redis: Option<&str>) -> FleetClient {
    let builder = stitch::Runtime::builder().base_url(base);
    let rt = match redis {
        Some(url) => builder
            .store(RedisStore::connect(url).await.unwrap())
            .build()
            .unwrap(),
        None => builder.build().unwrap(),
    };
    FleetClient::new(&rt).unwrap()
}

// --- 1. Round trips ---------------------------------------------------------------------------

async fn round_trips(redis: &Redis, base: &str) {
    let api = client(base, Some(&redis.url())).await;
    async fn call(api: &FleetClient, both: bool) {
        if both {
            api.both().await.unwrap()
        } else {
            api.fast().await.unwrap()
        }
    }
    // Commands a script runs (`redis.call`) are counted too; only EVAL/EVALSHA (and any
    // command outside a script) are round trips.
    let scripted = [
        "time", "get", "set", "pexpire", "publish", "zadd", "zrem", "zrange", "zscore", "zcard",
    ];
    const CALLS: u64 = 1000;
    for (what, both) in [("pacing only", false), ("rate + concurrency", true)] {
        call(&api, both).await;
        // A lease is released by a task spawned when the call's permit drops: let it land.
        let settle = Duration::from_millis(100);
        tokio::time::sleep(settle).await;
        let before = redis.commandstats();
        for _ in 0..CALLS {
            call(&api, both).await;
        }
        tokio::time::sleep(settle).await;
        let after = redis.commandstats();
        let delta: BTreeMap<&str, u64> = after
            .iter()
            .map(|(k, v)| (k.as_str(), v - before.get(k).copied().unwrap_or(0)))
            .filter(|(k, v)| *v > 0 && *k != "info")
            .collect();
        let trips: u64 = delta
            .iter()
            .filter(|(k, _)| !scripted.contains(k) && !k.starts_with("zremrangeby"))
            .map(|(_, v)| v)
            .sum();
        // Each call gives its lease back after it (one `lease_release`: the only script that
        // runs `ZREM` on a held lease); that round trip is not part of the acquire.
        let releases = delta.get("zrem").copied().unwrap_or(0);
        let acquires = trips.saturating_sub(releases);
        println!(
            "1. round trips per fleet acquire ({what}): {:.3} ({acquires} in {CALLS} calls; goal \
             1), plus {releases} lease releases after the calls | commandstats deltas: {delta:?}",
            acquires as f64 / CALLS as f64
        );
    }
}

// --- 2. Acquire throughput --------------------------------------------------------------------

/// The driver's reserve script, verbatim (`store/redis.rs`), for the raw loop.
const RESERVE: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local done = redis.call('GET', KEYS[2])
if done then return {1, tonumber(done), now} end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local interval = tonumber(ARGV[1])
local grant = math.max(now, tat - tonumber(ARGV[2]))
local maxw = tonumber(ARGV[3])
if maxw >= 0 and grant - now > maxw then return {0, grant - now, now} end
local nxt = math.max(tat, grant) + interval
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000))
redis.call('SET', KEYS[2], string.format('%d', grant), 'PX',
  tonumber(ARGV[4]) + math.ceil((grant - now) / 1000))
return {1, grant, now}";

/// The driver's last script argument, passed by the raw loop too: how long a reservation's
/// marker is kept, in milliseconds ([`RETRY_WINDOW`](stitch::store::RETRY_WINDOW)). (It passed
/// 60 s, so its markers, unlike the driver's, never expired during the section.)
const RETRY_MS: u64 = stitch::store::RETRY_WINDOW.as_millis() as u64;

/// This process's CPU time (user + system, all threads) in microseconds, from `/proc/self/stat`
/// (clock ticks of 10 ms, Linux's `CLK_TCK` of 100). On a machine whose cores are shared with
/// other work, throughput follows the load; the client's CPU per operation does not.
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<u64>() * 10_000
}

/// CPU microseconds per operation of the last [`throughput`] run in this process.
static CPU_PER_OP: Mutex<f64> = Mutex::new(0.0);

/// Operations per second of `TASKS` tasks running `op` back to back for `ROUND` (and, in
/// [`CPU_PER_OP`], this process's CPU time per operation), on an emptied `redis`.
///
/// Why empty it: every operation leaves a marker that expires one retry window (10 s) later, so
/// the markers of one run would expire during a later one, which would pay the server's expiry
/// work (measured: 50 K to 350 K expirations in a 2 s run, about 2 µs more server CPU per
/// operation); in this section's order, the raw loop's markers would expire during the next
/// round's driver run.
///
/// `op` is given a number no other operation of this process gets, whichever run: the raw loop
/// makes its idempotency markers from it, and a number seen before would find its marker still
/// stored and take the script's replay answer (two `GET`s, about half a reservation's server
/// time) instead of a reservation. Numbers restarting at 0 in every run made the raw loop
/// cheaper round after round (the driver's ratio "declined" from 0.95 to 0.77).
async fn throughput<F, Fut>(redis: &Redis, op: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    redis.cli(&["FLUSHALL"]);
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let cpu = cpu_us();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS as u64 {
        let op = op.clone();
        tasks.spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < ROUND {
                // Run, task and count in separate bits: unique while a run's task makes fewer
                // than 2^32 operations.
                op((run << 48) | (t << 32) | n).await;
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.unwrap();
    }
    *CPU_PER_OP.lock().unwrap() = cpu_us().saturating_sub(cpu) as f64 / total.max(1) as f64;
    total as f64 / started.elapsed().as_secs_f64()
}

/// [`CPU_PER_OP`], read once after a run.
fn cpu_per_op() -> f64 {
    *CPU_PER_OP.lock().unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn acquire_throughput(redis: &Redis, base: &str) {
    // Bounds long enough that a loaded machine does not turn into failed operations.
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let raw = redis::Client::open(redis.url()).unwrap();
    let raw = redis::aio::ConnectionManager::new(raw).await.unwrap();
    let script = redis::Script::new(RESERVE);
    let (fleet, local) = (
        client(base, Some(&redis.url())).await,
        client(base, None).await,
    );
    // The fleet throttle's own acquire (breaker, budget lookup, per-operation bound and retry,
    // the permit), without the HTTP call around it.
    let acquirer = stitch::Runtime::builder()
        .store(
            RedisStore::connect(&redis.url())
                .await
                .unwrap()
                .with_timeout(Duration::from_secs(2)),
        )
        .store_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (mut driver, mut eval, mut extras, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut acquires, mut acquire_ratios) = (Vec::new(), Vec::new());
    // Client CPU µs per operation: driver, raw, fleet acquire.
    let (mut cpu_d, mut cpu_e, mut cpu_a) = (Vec::new(), Vec::new(), Vec::new());
    let (mut calls_fleet, mut calls_local, mut call_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let s = store.clone();
        let d = throughput(redis, move |_| {
            let s = s.clone();
            async move {
                let g = Gcra {
                    interval_us: 1,
                    tolerance_us: 1_000_000,
                    max_wait_us: None,
                    id: OpId::random(),
                };
                s.reserve("stitch:{bench-driver}:tat", g).await.unwrap();
            }
        })
        .await;
        cpu_d.push(cpu_per_op());
        let (c, sc) = (raw.clone(), script.clone());
        let e = throughput(redis, move |i| {
            let (mut c, sc) = (c.clone(), sc.clone());
            async move {
                // Same keys shape (the tat and a per-operation marker, never one stored before),
                // same arguments (the driver's retry window included).
                let marker = format!("stitch:{{bench-raw}}:tat:op:{i:032x}");
                let _: redis::Value = sc
                    .key("stitch:{bench-raw}:tat")
                    .key(marker)
                    .arg(1)
                    .arg(1_000_000)
                    .arg(-1)
                    .arg(RETRY_MS)
                    .invoke_async(&mut c)
                    .await
                    .unwrap();
            }
        })
        .await;
        cpu_e.push(cpu_per_op());
        // The raw loop plus what the driver adds per operation besides the script: a fresh
        // random idempotency id (an OS random read) and a timeout (a timer registration).
        let (c, sc) = (raw.clone(), script.clone());
        let x = throughput(redis, move |_| {
            let (mut c, sc) = (c.clone(), sc.clone());
            async move {
                let id = OpId::random();
                let marker = format!("stitch:{{bench-raw}}:tat:op:{id}");
                let mut inv = sc.key("stitch:{bench-raw}:tat");
                inv.key(marker).arg(1).arg(1_000_000).arg(-1).arg(RETRY_MS);
                tokio::time::timeout(
                    Duration::from_secs(2),
                    inv.invoke_async::<redis::Value>(&mut c),
                )
                .await
                .unwrap()
                .unwrap();
            }
        })
        .await;
        let r = acquirer.clone();
        let a = throughput(redis, move |_| {
            let r = r.clone();
            async move {
                let permit =
                    r.__throttles()
                        .acquire(FleetClient::FAST, "placeholder.invalid:80", None);
                drop(permit.await.unwrap());
            }
        })
        .await;
        cpu_a.push(cpu_per_op());
        acquires.push(a);
        acquire_ratios.push(a / e);
        driver.push(d);
        eval.push(e);
        extras.push(x);
        ratios.push(d / e);
        let f = fleet.clone();
        let cf = throughput(redis, move |_| {
            let f = f.clone();
            async move { f.fast().await.unwrap() }
        })
        .await;
        let l = local.clone();
        let cl = throughput(redis, move |_| {
            let l = l.clone();
            async move { l.fast().await.unwrap() }
        })
        .await;
        calls_fleet.push(cf);
        calls_local.push(cl);
        call_ratios.push(cf / cl);
    }
    println!(
        "2. acquire throughput, {TASKS} tasks: driver reserve {:.0}/s, raw EVALSHA of the same \
         script {:.0}/s, ratio {:.3} (median of {ROUNDS} alternating rounds: {:?}; goal >= 0.9)",
        median(driver),
        median(eval),
        median(ratios.clone()),
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>()
    );
    println!(
        "   fleet acquire (the throttle seam, pacing only): {:.0}/s, ratio to the raw loop {:.3} \
         ({:?})",
        median(acquires),
        median(acquire_ratios.clone()),
        acquire_ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
    );
    println!(
        "   client CPU per operation (µs, this process): driver reserve {:.2}, raw EVALSHA {:.2}, \
         fleet acquire {:.2}",
        median(cpu_d),
        median(cpu_e),
        median(cpu_a)
    );
    println!(
        "   raw EVALSHA + a random id + a timeout per operation: {:.0}/s",
        median(extras)
    );
    println!(
        "   whole calls, {TASKS} tasks: fleet throttle {:.0}/s, in-process throttle {:.0}/s, \
         ratio {:.3}",
        median(calls_fleet),
        median(calls_local),
        median(call_ratios)
    );
}

// --- 3, 4. Worker processes -------------------------------------------------------------------

/// The worker's side: `wake` loops `one(who)` with one task, `paced` saturates `paced()` with 8.
async fn worker(spec: &str) {
    let f: Vec<&str> = spec.split('|').collect();
    let api = client(f[2], Some(f[1])).await;
    let who: u32 = f[3].parse().unwrap();
    let (start, until): (u64, u64) = (f[4].parse().unwrap(), f[5].parse().unwrap());
    tokio::time::sleep(Duration::from_micros(start.saturating_sub(unix_us()))).await;
    let tasks = if f[0] == "wake" { 1 } else { 8 };
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (api, role) = (api.clone(), f[0].to_owned());
        set.spawn(async move {
            while unix_us() < until {
                let r = match role.as_str() {
                    "wake" => api.one(who).await,
                    _ => api.paced().await,
                };
                // A store operation past its timeout on a loaded machine fails one call
                // (`ThrottleUnavailable`); the run goes on, and says so.
                if let Err(e) = r {
                    eprintln!("worker {who}: {e}");
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// Spawns `n` workers running from 2 s from now for `seconds`; also returns the end of the run.
fn spawn_workers(
    role: &str,
    redis: &Redis,
    base: &str,
    n: u32,
    seconds: u64,
) -> (Vec<Child>, Instant) {
    let start = unix_us() + 2_000_000;
    let until = start + seconds * 1_000_000;
    let end = Instant::now() + Duration::from_micros(until - unix_us());
    let children = (0..n)
        .map(|who| {
            Command::new(std::env::current_exe().unwrap())
                .env(
                    WORKER,
                    format!("{role}|{}|{base}|{who}|{start}|{until}", redis.url()),
                )
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    (children, end)
}

async fn wait_all(children: Vec<Child>) {
    tokio::task::spawn_blocking(move || {
        for mut c in children {
            assert!(c.wait().unwrap().success(), "a worker failed");
        }
    })
    .await
    .unwrap();
}

async fn wake_up_latency(redis: &Redis) {
    let (base, log) = upstream(Duration::from_millis(2)).await;
    let (children, end) = spawn_workers("wake", redis, &base, 4, 10);
    wait_all(children).await;
    let mut spans = log.lock().unwrap().clone();
    spans.sort_by_key(|s| s.1);
    // Hand-offs within the run only: a worker exiting right after its last call takes its
    // release task down with its tokio runtime, so that lease is only freed by its TTL (10 s).
    let mut gaps: Vec<Duration> = spans
        .windows(2)
        .filter(|w| w[0].0 != w[1].0 && w[1].1 < end)
        .map(|w| w[1].1.saturating_duration_since(w[0].2))
        .collect();
    gaps.sort();
    let overlaps = spans.windows(2).filter(|w| w[1].1 < w[0].2).count();
    println!(
        "3. release-to-waiter hand-off across processes (upstream: one request's end to another \
         process's next request): {} hand-offs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (goal \
         p99 <= 5 ms); overlapping requests {overlaps} (must be 0)",
        gaps.len(),
        ms(percentile(&gaps, 0.5)),
        ms(percentile(&gaps, 0.99)),
        ms(*gaps.last().unwrap())
    );
}

async fn fleet_rate(redis: &Redis) {
    let (base, log) = upstream(Duration::ZERO).await;
    wait_all(spawn_workers("paced", redis, &base, 4, 5).0).await;
    let mut at: Vec<Instant> = log.lock().unwrap().iter().map(|s| s.1).collect();
    at.sort();
    let span = at.last().unwrap().duration_since(at[0]).as_secs_f64();
    let rate = (at.len() - 1) as f64 / span;
    println!(
        "4. achieved fleet rate, 4 processes x 8 tasks on `200/s`: {} requests over {span:.2} s = \
         {rate:.2}/s, {:.4} of declared",
        at.len(),
        rate / 200.0
    );
}

// --- 5. Outage ---------------------------------------------------------------------------------

async fn outage(base: &str) {
    let redis = Redis::start(&[]);
    let rt = stitch::Runtime::builder()
        .base_url(base)
        .store(RedisStore::connect(&redis.url()).await.unwrap())
        .store_timeout(Duration::from_millis(50))
        .throttle_outage(stitch::throttle::ThrottleOutage::local(1.0))
        .build()
        .unwrap();
    let fleet = FleetClient::new(&rt).unwrap();
    let local = client(base, None).await;
    fleet.fast().await.unwrap();
    local.fast().await.unwrap();
    redis.signal("STOP");
    // The first call pays the store timeout (retried once) and opens the breaker.
    let t = Instant::now();
    fleet.fast().await.unwrap();
    let first = t.elapsed();
    let (mut f, mut l) = (Vec::new(), Vec::new());
    for _ in 0..3000 {
        let t = Instant::now();
        fleet.fast().await.unwrap();
        f.push(t.elapsed());
        let t = Instant::now();
        local.fast().await.unwrap();
        l.push(t.elapsed());
    }
    redis.signal("CONT");
    let probes = f
        .iter()
        .filter(|d| **d >= Duration::from_millis(50))
        .count();
    f.sort();
    l.sort();
    println!(
        "5. Redis frozen: first call {:.1} ms (opens the breaker); then per call p50 {:.3} ms vs \
         {:.3} ms without a store (added {:.3} ms, goal <= 1 ms), p99 {:.3} vs {:.3} ms; {probes} \
         of {} calls were probes paying the store timeout (one per 500 ms)",
        ms(first),
        ms(percentile(&f, 0.5)),
        ms(percentile(&l, 0.5)),
        ms(percentile(&f, 0.5)) - ms(percentile(&l, 0.5)),
        ms(percentile(&f, 0.99)),
        ms(percentile(&l, 0.99)),
        f.len()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(spec) = std::env::var(WORKER) {
        return rt.block_on(worker(&spec));
    }
    // `cargo test --all-targets` runs bench binaries too; only `cargo bench` (which passes
    // `--bench`) should spend the time.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark: run it with `cargo bench`");
        return;
    }
    // `STITCH_BENCH_ONLY=2` (a comma-separated list of sections) runs only those.
    let only = std::env::var("STITCH_BENCH_ONLY").ok();
    let run = |n: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s.trim() == n))
    };
    rt.block_on(async {
        let redis = Redis::start(&[]);
        let (base, _) = upstream(Duration::ZERO).await;
        if run("1") {
            round_trips(&redis, &base).await;
        }
        if run("2") {
            acquire_throughput(&redis, &base).await;
        }
        if run("3") {
            wake_up_latency(&redis).await;
        }
        if run("4") {
            fleet_rate(&redis).await;
        }
        if run("5") {
            outage(&base).await;
        }
    });
}
