//! The fleet harness shared by the cross-process tests: a real `redis-server` on a free loopback
//! port (never 6379), a real 3-master Redis Cluster, and worker processes (the test binary
//! re-executed with one test selected and a spec in its environment) driven line by line over
//! their stdin and stdout.
//!
//! `redis-server` and `redis-cli` must be on the PATH (`bash scripts/test` installs them); without
//! them the tests fail, saying so, rather than skip.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use stitch::store::RedisStore;

/// A free loopback port, from the OS (6379 is never used, so a developer's Redis is safe).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Microseconds since the Unix epoch: a clock every process of the machine shares, for common
/// start times and cross-process latencies.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A `redis-server` process on a free loopback port (persistence off), killed and its directory
/// removed on drop.
pub struct Redis {
    port: u16,
    child: Child,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    /// Starts a server with extra `redis-server` arguments and waits until it answers `PING`.
    pub fn start(extra: &[&str]) -> Redis {
        let port = free_port();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stitch-redis-{port}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = launch(port, &dir, &extra);
        let server = Redis {
            port,
            child,
            dir,
            extra,
        };
        server.wait_ready();
        server
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server, as a crash would; nothing answers on its port until [`Self::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new, empty server on the same port with the same arguments.
    pub fn restart(&mut self) {
        self.child = launch(self.port, &self.dir, &self.extra);
        self.wait_ready();
    }

    /// Sends the server a signal (`STOP` freezes it as a hung host would, `CONT` resumes it).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run `kill`")
            .success();
        assert!(ok, "kill -{name} redis");
    }

    /// Runs one command through `redis-cli`; its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `redis-cli` ({e}): install `redis-tools`"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `INFO commandstats` as command → calls.
    pub fn commandstats(&self) -> std::collections::BTreeMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // A stopped server would not die of SIGKILL any later: resume it first, for `wait`.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn launch(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `redis-server` ({e}): install it (`apt-get install redis-server`) \
                 to run the Redis tests"
            )
        })
}

/// A local 3-master Redis Cluster (no replicas), created with `redis-cli --cluster create` and
/// waited for until every node reports `cluster_state:ok`.
pub struct Cluster {
    /// The nodes, in creation order.
    pub nodes: Vec<Redis>,
}

impl Cluster {
    /// Starts three cluster-enabled servers and joins them.
    pub fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                Redis::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run `redis-cli --cluster create`");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("All 16384 slots covered"),
            "cluster created: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "cluster_state:ok within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { nodes }
    }

    /// Every node's `redis://` URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Redis::url).collect()
    }

    /// The store spec [`connect`] reads: `cluster:url,url,url`.
    pub fn spec(&self) -> String {
        format!("cluster:{}", self.urls().join(","))
    }
}

/// Connects to the store a worker spec names: `redis://..` or `cluster:url,url,url`.
pub async fn connect(spec: &str) -> RedisStore {
    match spec.strip_prefix("cluster:") {
        Some(urls) => {
            let urls: Vec<&str> = urls.split(',').collect();
            RedisStore::connect_cluster(&urls)
                .await
                .expect("connect to the cluster")
        }
        None => RedisStore::connect(spec).await.expect("connect to redis"),
    }
}

/// The prefix of a worker's answer lines on its stdout (the test harness prints its own lines
/// there too, sometimes on the same line).
pub const ANSWER: &str = "@@ ";

/// Writes one answer line for the parent (see [`Worker::recv`]), flushed at once.
pub fn answer(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{ANSWER}{line}");
    let _ = out.flush();
}

/// Reads the parent's commands, one per line of stdin, on a thread of its own; the receiver
/// ends when stdin closes (the parent dropped the [`Worker`]).
pub fn commands() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A worker process: this test binary re-executed to run `test` alone, with `spec` in the
/// environment variable `var`; commands go to its stdin, [`ANSWER`] lines come back from its
/// stdout. Killed on drop.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Worker {
    /// Spawns the worker (stderr is inherited, so its panics show in the test's output).
    pub fn spawn(test: &str, var: &str, spec: &str) -> Worker {
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(var, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a worker");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some((_, a)) = line.split_once(ANSWER) {
                    if tx.send(a.to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        Worker {
            child,
            stdin,
            answers,
        }
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("the worker's stdin is open");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .expect("write to a worker");
    }

    /// The next answer, waited for at most 30 s.
    pub async fn recv(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(30), self.answers.recv()).await {
            Ok(Some(a)) => a,
            Ok(None) => panic!("worker {} exited without answering", self.child.id()),
            Err(_) => panic!("worker {} did not answer within 30 s", self.child.id()),
        }
    }

    /// Sends a command and waits for its answer.
    pub async fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.recv().await
    }

    /// SIGKILLs the worker.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin ends a healthy worker; the kill covers a stuck one.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

/// The `p`-quantile (0..=1) of sorted samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
