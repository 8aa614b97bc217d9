//! The fleet cache on a real `redis-server` (started here on a free loopback port), measured side
//! by side in one run:
//!
//! 1. an L2 hit through a generated call (the in-process tier bypassed: `max_entries = 1` and
//!    the calls cycle over 256 warmed keys, so every call claims the shared entry) next to a raw
//!    redis-rs `GET` of the same entries plus the same decode of the same bytes (the record
//!    format, then `serde_json` into the same output type), criterion, alternating;
//! 2. round trips per L2 hit, per miss (leader) and per coalesced miss (waiter), counted with
//!    `MONITOR` (commands sent by clients; commands run inside scripts are not round trips, and
//!    the driver's native fill claim, three commands pipelined, is one);
//! 3. fleet wake-up latency: from the leader's call returning (its value in hand; the fenced
//!    write and its notification follow) to each of 32 waiting instances holding the value;
//! 4. upstream requests per cold key with 8 and 32 instances missing it at once.
//!
//! Instances in 3 and 4 are runtimes in this one process, each with its own store connections,
//! event subscription, in-process tier and flights: what makes them a fleet is the store, not
//! the process (the cross-process runs are the tests in `tests/tests/fleet_cache_redis.rs`).
//!
//! Run: `cargo bench -p stitch-benches --bench fleet_cache` (needs `redis-server` and `redis-cli`
//! on the PATH); `STITCH_BENCH_ONLY=1` (a comma-separated list of sections) runs only those.

use criterion::Criterion;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stitch::store::RedisStore;
use stitch::Runtime;
use stitch_tests::fleet::{percentile, Redis};

#[stitch::seam(base_url = "http://placeholder.invalid")]
trait Bench {
    /// One entry in-process: cycling over more keys makes every call an L1 miss.
    #[stitch(get, path = "/users/{id}", cache(ttl = "10m", max_entries = 1))]
    async fn user(&self, id: u64) -> stitch::Result<serde_json::Value>;

    /// `user` into a typed output (the README's shape) rather than `serde_json::Value`: the
    /// in-process tier keeps a copy of each L2 hit's value, and what that copy costs depends on
    /// the type (a `Value` object is a tree of ten allocations here, this struct four).
    #[stitch(get, path = "/typed/{id}", cache(ttl = "10m", max_entries = 1))]
    async fn typed(&self, id: u64) -> stitch::Result<User>;

    /// The upstream holds it 50 ms: a miss others can wait on.
    #[stitch(get, path = "/slow/{id}", cache = "10m")]
    async fn slow(&self, id: u64) -> stitch::Result<serde_json::Value>;
}

/// The typed output of `Bench::typed`: the fields of the upstream's body.
#[derive(Debug, Clone, serde::Deserialize, stitch::Fingerprint)]
#[allow(dead_code)]
struct User {
    id: String,
    name: String,
    tags: Vec<String>,
    bio: String,
}

/// Warmed keys cycled over by the L2-hit benchmark.
const KEYS: u64 = 256;

/// `redis-cli MONITOR`: every command the server runs, as it runs it.
struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    fn start(redis: &Redis) -> Monitor {
        let mut child = Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "MONITOR"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run `redis-cli MONITOR`");
        let out = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        Monitor { child, lines }
    }

    /// Round trips clients made between two `ECHO` markers: commands not run by a script (`lua`)
    /// and not a subscription's heartbeat or the markers themselves, with the driver's native fill
    /// claim (`PTTL`, `SET .. NX .. GET`, `GET`, pipelined by one client) counted once.
    async fn round_trips(
        &self,
        redis: &Redis,
        work: impl std::future::Future<Output = ()>,
    ) -> usize {
        let mark = |m: &str| redis.cli(&["ECHO", m]);
        mark("bench-begin");
        tokio::time::sleep(Duration::from_millis(50)).await;
        work.await;
        // Writes behind the call (the fill's completion) land within this.
        tokio::time::sleep(Duration::from_millis(100)).await;
        mark("bench-end");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        let begin = lines
            .iter()
            .position(|l| l.contains("\"bench-begin\""))
            .unwrap();
        let end = lines
            .iter()
            .position(|l| l.contains("\"bench-end\""))
            .unwrap();
        // The client (`[db address]`) and the command of a line.
        let parse = |l: &str| -> (String, String) {
            let client = l.split(']').next().unwrap_or_default();
            let client = client.split('[').nth(1).unwrap_or_default().to_owned();
            let command = l.split("] \"").nth(1).unwrap_or_default();
            let name = command
                .split('"')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let is_claim =
                name == "SET" && command.contains("\"NX\"") && command.ends_with("\"GET\"");
            (client, if is_claim { "SET-NX-GET".into() } else { name })
        };
        // The previous command of each client: the second and third commands of a native claim
        // travel with the first.
        let mut last: std::collections::HashMap<String, String> = Default::default();
        lines[begin + 1..end]
            .iter()
            .filter(|l| !l.contains(" lua] "))
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                !l.contains("\"ping\"") && !l.contains("\"echo\"")
            })
            .filter(|l| {
                let (client, name) = parse(l);
                let before = last.insert(client, name.clone()).unwrap_or_default();
                let rides = (before == "PTTL" && name == "SET-NX-GET")
                    || (before == "SET-NX-GET" && name == "GET");
                !rides
            })
            .count()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback upstream: `{"id": .., "name": .., "tags": [..]}` for `/users/..` at once and for
/// `/slow/..` after 50 ms; counts requests per path.
async fn upstream() -> (String, Arc<Mutex<std::collections::HashMap<String, usize>>>) {
    let counts: Arc<Mutex<std::collections::HashMap<String, usize>>> = Arc::default();
    let seen = counts.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            let path = uri.path().to_owned();
            *seen.lock().unwrap().entry(path.clone()).or_default() += 1;
            if path.starts_with("/slow/") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            axum::Json(serde_json::json!({
                "id": path, "name": "Grace Hopper", "tags": ["admiral", "cobol", "compiler"],
                "bio": "x".repeat(200),
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, counts)
}

async fn instance(redis: &Redis, base: &str) -> BenchClient {
    let rt = Runtime::builder()
        .base_url(base)
        .store(RedisStore::connect(&redis.url()).await.unwrap())
        .principal_key([3; 32])
        .build()
        .unwrap();
    BenchClient::new(&rt).unwrap()
}

#[path = "support/l2_hit.rs"]
mod l2_hit;
use l2_hit::{claim_and_decode, decode, decode_as, fill_keys};

/// This process's CPU time so far (every thread, user and system) in nanoseconds, from the
/// scheduler's per-thread accounting (`/proc/self/task/*/schedstat`): on cores shared with other
/// work the wall time of a call follows the load; the CPU it costs this process does not.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Context switches of this process's threads so far (voluntary and not, from
/// `/proc/self/task/*/status`): each is a thread that slept and was woken, the cost that grows
/// with the machine's load.
fn switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too; only `cargo bench` (which passes
    // `--bench`) should spend the time.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let only = std::env::var("STITCH_BENCH_ONLY").ok();
    let run = |n: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s.trim() == n))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = Redis::start(&[]);
    let (base, counts) = rt.block_on(upstream());
    let api = rt.block_on(instance(&redis, &base));

    // The warm entries of 1 and 2.
    rt.block_on(async {
        for id in 0..KEYS {
            api.user(id).await.unwrap();
        }
        // The fills complete behind the calls.
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    if run("1") {
        // 1. L2 hit through a generated call vs raw GET + the same decode.
        // The driver's own claim of the same entries (value, lease and generation keys of one hash
        // tag), for the split between the claim's round trip and the pipeline around it.
        let fills = fill_keys(&redis);
        let keys: Vec<String> = fills.iter().map(|f| f[0].clone()).collect();
        assert_eq!(keys.len() as u64, KEYS, "one shared entry per warmed key");
        let raw = rt.block_on(async {
            let client = redis::Client::open(redis.url()).unwrap();
            redis::aio::ConnectionManager::new(client).await.unwrap()
        });
        let store = rt.block_on(RedisStore::connect(&redis.url())).unwrap();
        let n = AtomicUsize::new(0);
        let mut c = Criterion::default()
            .configure_from_args()
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(6));
        {
            let mut g = c.benchmark_group("fleet_cache/l2_hit");
            g.bench_function("stitch_call", |b| {
                b.to_async(&rt).iter(|| {
                    let i = n.fetch_add(1, Ordering::Relaxed) as u64 % KEYS;
                    let api = api.clone();
                    async move { api.user(i).await.unwrap() }
                })
            });
            g.bench_function("raw_get_and_decode", |b| {
                b.to_async(&rt).iter(|| {
                    let i = n.fetch_add(1, Ordering::Relaxed) % keys.len();
                    let (mut conn, key) = (raw.clone(), keys[i].clone());
                    async move {
                        let bytes: Vec<u8> = redis::cmd("GET")
                            .arg(&key)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                        decode(bytes::Bytes::from(bytes)).unwrap()
                    }
                })
            });
            g.bench_function("driver_fill_claim_and_decode", |b| {
                b.to_async(&rt).iter(|| {
                    let i = n.fetch_add(1, Ordering::Relaxed) % keys.len();
                    let (store, key) = (store.clone(), fills[i].clone());
                    async move { claim_and_decode(&store, &key).await }
                })
            });
            g.finish();
        }
        // The same three, alternating in rounds (criterion runs them one after the other; the
        // machine's load changes in between): the median of per-round means.
        rt.block_on(async {
            let per_round = 400;
            let mut times: [Vec<f64>; 3] = Default::default();
            let (mut cpu, mut switched) = ([0u64; 3], [0u64; 3]);
            for round in 0..15 {
                for (which, t) in times.iter_mut().enumerate() {
                    let (began, cpu_began, switches_began) = (Instant::now(), cpu_ns(), switches());
                    for j in 0..per_round {
                        let i = (round * per_round + j) % keys.len();
                        match which {
                            0 => drop(api.user(i as u64).await.unwrap()),
                            1 => {
                                let mut conn = raw.clone();
                                let bytes: Vec<u8> = redis::cmd("GET")
                                    .arg(&keys[i])
                                    .query_async(&mut conn)
                                    .await
                                    .unwrap();
                                drop(decode(bytes::Bytes::from(bytes)).unwrap());
                            }
                            _ => drop(claim_and_decode(&store, &fills[i]).await),
                        }
                    }
                    t.push(began.elapsed().as_secs_f64() * 1e6 / per_round as f64);
                    cpu[which] += cpu_ns().saturating_sub(cpu_began);
                    switched[which] += switches().saturating_sub(switches_began);
                }
            }
            for t in times.iter_mut() {
                t.sort_by(f64::total_cmp);
            }
            let median = |t: &Vec<f64>| t[t.len() / 2];
            let (call, get, claim) = (median(&times[0]), median(&times[1]), median(&times[2]));
            println!(
                "paired rounds (median of 15 × {per_round} calls): stitch call {call:.1} µs, raw GET + \
                 decode {get:.1} µs (ratio {:.2}), driver fill_claim + decode {claim:.1} µs (ratio \
                 {:.2} to GET; the call is {:.2}× the claim)",
                call / get,
                claim / get,
                call / claim
            );
            let per_call = |ns: u64| ns as f64 / 1e3 / (15 * per_round) as f64;
            let (call, get, claim) = (per_call(cpu[0]), per_call(cpu[1]), per_call(cpu[2]));
            println!(
                "CPU of this process per call (all threads, same rounds): stitch call {call:.1} µs, \
                 raw GET + decode {get:.1} µs (ratio {:.2}), driver fill_claim + decode {claim:.1} \
                 µs (ratio {:.2} to GET)",
                call / get,
                claim / get
            );
            let per_call = |n: u64| n as f64 / (15 * per_round) as f64;
            println!(
                "context switches per call (this process, same rounds): stitch call {:.2}, raw GET \
                 + decode {:.2}, driver fill_claim + decode {:.2}",
                per_call(switched[0]),
                per_call(switched[1]),
                per_call(switched[2])
            );
        });
        // The same with a typed output: the call next to a raw `GET` + the same decode into the
        // same struct, paired rounds.
        let before: std::collections::HashSet<String> = keys.iter().cloned().collect();
        rt.block_on(async {
            for id in 0..KEYS {
                api.typed(id).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let typed: Vec<String> = redis
            .cli(&["--scan", "--pattern", "*:v2"])
            .lines()
            .filter(|k| !before.contains(*k))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            typed.len() as u64,
            KEYS,
            "one shared entry per warmed typed key"
        );
        rt.block_on(async {
            let per_round = 400;
            let mut times: [Vec<f64>; 2] = Default::default();
            for round in 0..15 {
                for (which, t) in times.iter_mut().enumerate() {
                    let began = Instant::now();
                    for j in 0..per_round {
                        let i = (round * per_round + j) % typed.len();
                        if which == 0 {
                            drop(api.typed(i as u64).await.unwrap());
                        } else {
                            let mut conn = raw.clone();
                            let bytes: Vec<u8> = redis::cmd("GET")
                                .arg(&typed[i])
                                .query_async(&mut conn)
                                .await
                                .unwrap();
                            drop(decode_as::<User>(bytes::Bytes::from(bytes)).unwrap());
                        }
                    }
                    t.push(began.elapsed().as_secs_f64() * 1e6 / per_round as f64);
                }
            }
            for t in times.iter_mut() {
                t.sort_by(f64::total_cmp);
            }
            let (call, get) = (times[0][7], times[1][7]);
            println!(
                "typed output, paired rounds (median of 15 × {per_round} calls): stitch call \
                 {call:.1} µs, raw GET + decode into the same struct {get:.1} µs (ratio {:.2})",
                call / get
            );
        });
        let counts = counts.lock().unwrap();
        let hit = |prefix: &str| counts.keys().filter(|p| p.starts_with(prefix)).count() as u64;
        assert_eq!(hit("/users/"), KEYS, "every benchmarked call was a hit");
        assert_eq!(
            hit("/typed/"),
            KEYS,
            "every benchmarked typed call was a hit"
        );
    }

    rt.block_on(async {
        if run("2") {
            // 2. Round trips per L2 hit, per miss: leader and waiter.
            let monitor = Monitor::start(&redis);
            let hits = 200;
            let trips = monitor
                .round_trips(&redis, async {
                    for i in 0..hits {
                        api.user(i % KEYS).await.unwrap();
                    }
                })
                .await;
            println!("round trips per L2 hit: {:.2} ({trips} for {hits} calls)", trips as f64 / hits as f64);
            let misses = 20;
            let trips = monitor
                .round_trips(&redis, async {
                    for i in 0..misses {
                        api.user(10_000 + i).await.unwrap();
                    }
                })
                .await;
            println!("round trips per miss, leader: {:.2} ({trips} for {misses} misses)", trips as f64 / misses as f64);
            let other = instance(&redis, &base).await;
            other.slow(0).await.unwrap(); // subscribed and synced
            api.slow(1).await.unwrap();
            let pairs = 20;
            let trips = monitor
                .round_trips(&redis, async {
                    for i in 0..pairs {
                        let leader = {
                            let api = api.clone();
                            tokio::spawn(async move { api.slow(100 + i).await.unwrap() })
                        };
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        other.slow(100 + i).await.unwrap();
                        leader.await.unwrap();
                    }
                })
                .await;
            println!(
                "round trips per coalesced miss: {:.2} for the leader and the waiter together ({trips} \
                 for {pairs} pairs; the leader's alone: see above)",
                trips as f64 / pairs as f64
            );
            drop(monitor);
        }

        // The instances of 3 and 4.
        let waiters = 32;
        let mut fleet = Vec::new();
        if run("3") || run("4") {
            for _ in 0..waiters {
                let w = instance(&redis, &base).await;
                w.slow(0).await.unwrap(); // subscribed and synced
                fleet.push(w);
            }
        }

        if run("3") {
            // 3. Wake-up latency with 32 waiting instances.
            let mut wake = Vec::new();
            for round in 0..40u64 {
                let id = 1_000 + round;
                let leader = {
                    let api = api.clone();
                    tokio::spawn(async move {
                        api.slow(id).await.unwrap();
                        Instant::now()
                    })
                };
                tokio::time::sleep(Duration::from_millis(15)).await;
                let calls: Vec<_> = fleet
                    .iter()
                    .map(|w| {
                        let w = w.clone();
                        tokio::spawn(async move {
                            w.slow(id).await.unwrap();
                            Instant::now()
                        })
                    })
                    .collect();
                let led = leader.await.unwrap();
                for c in calls {
                    wake.push(c.await.unwrap().saturating_duration_since(led));
                }
                assert_eq!(counts.lock().unwrap()[&format!("/slow/{id}")], 1);
            }
            wake.sort();
            println!(
                "wake-up, leader's value in hand → waiter holding it, {waiters} waiting instances: \
                 p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} samples)",
                ms(percentile(&wake, 0.5)),
                ms(percentile(&wake, 0.99)),
                ms(wake[wake.len() - 1]),
                wake.len()
            );
        }

        if run("4") {
            // 4. Upstream requests per cold key, all instances at once.
            for size in [8usize, 32] {
                let keys = 20u64;
                let mut requests = 0;
                for k in 0..keys {
                    let id = 50_000 + size as u64 * 1_000 + k;
                    let calls: Vec<_> = fleet[..size]
                        .iter()
                        .map(|w| {
                            let w = w.clone();
                            tokio::spawn(async move { w.slow(id).await.unwrap() })
                        })
                        .collect();
                    for c in calls {
                        c.await.unwrap();
                    }
                    requests += counts.lock().unwrap()[&format!("/slow/{id}")];
                }
                println!(
                    "upstream requests per cold key, {size} instances: {:.2} ({requests} for {keys} keys)",
                    requests as f64 / keys as f64
                );
            }
        }
    });
}
