//! The N× problem, shown and solved: 4 processes each calling a stitch declared
//! `throttle = "5/s"` send ~20/s when each enforces its throttle alone, and ~5/s together once
//! they share a store.
//!
//! Runs offline: it starts a local `redis-server` on a free port (it must be on the `PATH`), an
//! embedded upstream that counts its requests, and 4 worker processes of itself, twice — first
//! with in-process throttles, then with the shared Redis store. About 15 seconds.
//!
//! Run with `cargo run -p stitch-examples --example fleet`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[stitch::seam(base_url = "https://api.example.com")]
trait Api {
    /// Declared once, enforced per process or per fleet depending on the runtime.
    #[stitch(get, path = "/tick", throttle = "5/s")]
    async fn tick(&self) -> stitch::Result<String>;
}

const DECLARED: f64 = 5.0;
const PROCESSES: usize = 4;
const RUN: Duration = Duration::from_secs(5);
/// Set in a worker's environment: `mode|redis url|upstream url|start (unix ms)`.
const WORKER: &str = "STITCH_FLEET_EXAMPLE_WORKER";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Runtime::new()?;
    match std::env::var(WORKER) {
        Ok(spec) => runtime.block_on(worker(&spec)),
        Err(_) => runtime.block_on(coordinate()),
    }
}

async fn coordinate() -> Result<(), Box<dyn std::error::Error>> {
    let Some(redis) = Redis::start()? else {
        println!(
            "this example needs `redis-server` on the PATH (it starts its own on a free port):\n  \
             Debian/Ubuntu: sudo apt-get install redis-server\n  \
             macOS:         brew install redis\n  \
             or download:   https://redis.io/downloads"
        );
        return Ok(());
    };
    let (upstream, hits) = upstream().await?;
    println!(
        "{PROCESSES} processes, each calling `tick` (throttle = \"5/s\") from 8 tasks for {}s:",
        RUN.as_secs()
    );
    for (mode, label) in [
        ("local", "each process on its own"),
        ("shared", "one Redis store for all"),
    ] {
        let before = hits.load(Ordering::SeqCst);
        let seconds = run_workers(mode, &redis.url(), &upstream)?;
        let sent = hits.load(Ordering::SeqCst) - before;
        let rate = sent as f64 / seconds;
        println!(
            "  {label}: the upstream saw {rate:5.1}/s, declared {DECLARED}/s ({:.1}x)",
            rate / DECLARED
        );
    }
    Ok(())
}

/// Runs the workers from one common start; returns the run's length in seconds.
fn run_workers(mode: &str, redis: &str, upstream: &str) -> Result<f64, Box<dyn std::error::Error>> {
    // A common start a little ahead, so process start-up is not part of the measured window.
    let start = unix_ms() + 700;
    let exe = std::env::current_exe()?;
    let children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .env(WORKER, format!("{mode}|{redis}|{upstream}|{start}"))
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut child in children {
        let status = child.wait()?;
        if !status.success() {
            return Err(format!("a worker failed: {status}").into());
        }
    }
    Ok(RUN.as_secs_f64())
}

/// One worker process: 8 tasks calling `tick` back to back until the run ends.
async fn worker(spec: &str) -> Result<(), Box<dyn std::error::Error>> {
    let parts: Vec<&str> = spec.split('|').collect();
    let [mode, redis, upstream, start] = parts[..] else {
        return Err(format!("bad worker spec `{spec}`").into());
    };
    let builder = stitch::Runtime::builder().base_url(upstream);
    let runtime = match mode {
        // The store makes every throttle of this runtime fleet-wide: one budget in Redis.
        "shared" => builder
            .store(stitch::store::RedisStore::connect(redis).await?)
            .build()?,
        _ => builder.build()?,
    };
    let api = ApiClient::new(&runtime)?;
    let start: u64 = start.parse()?;
    tokio::time::sleep(Duration::from_millis(start.saturating_sub(unix_ms()))).await;
    let end = tokio::time::Instant::now() + RUN;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                // A call still waiting for its slot when the run ends is dropped: it sends nothing.
                while let Ok(result) = tokio::time::timeout_at(end, api.tick()).await {
                    if let Err(e) = result {
                        eprintln!("call failed: {e}");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    Ok(())
}

/// An upstream on a free loopback port that counts the requests it receives.
async fn upstream() -> Result<(String, Arc<AtomicUsize>), Box<dyn std::error::Error>> {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/tick",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::Json("tock") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, hits))
}

/// A `redis-server` on a free loopback port, stopped on drop.
struct Redis {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl Redis {
    /// `None` when `redis-server` is not on the PATH.
    fn start() -> Result<Option<Redis>, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("stitch-fleet-example-{port}"));
        std::fs::create_dir_all(&dir)?;
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let redis = Redis { port, child, dir };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("redis-server did not start within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(redis))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
