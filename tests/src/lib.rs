//! Shared helpers for the integration tests: a real HTTP server on loopback that records every
//! request it receives and answers from a script the test supplies.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// The raw path, still percent-encoded.
    pub path: String,
    /// The raw query string (without `?`), still encoded.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// When it arrived, on tokio's clock (so paused-time tests read exact timelines).
    pub at: tokio::time::Instant,
}

impl Seen {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the upstream answers.
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Delay before answering.
    pub delay: Option<Duration>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(value: serde_json::Value) -> Self {
        Reply {
            status: StatusCode::OK,
            headers: vec![("content-type", "application/json".into())],
            body: serde_json::to_vec(&value).expect("json"),
            delay: None,
        }
    }
    /// A status with a text body.
    pub fn status(status: u16, body: &str) -> Self {
        Reply {
            status: StatusCode::from_u16(status).expect("status"),
            headers: vec![("content-type", "text/plain".into())],
            body: body.as_bytes().to_vec(),
            delay: None,
        }
    }
    /// 200 with raw bytes.
    pub fn bytes(body: &[u8]) -> Self {
        Reply {
            status: StatusCode::OK,
            headers: vec![],
            body: body.to_vec(),
            delay: None,
        }
    }
    /// Answers after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A loopback HTTP server; dropped with the test's runtime.
pub struct Upstream {
    seen: Arc<Mutex<Vec<Seen>>>,
    load: Arc<Load>,
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for [`tls::start`].
    url: String,
}

pub mod tls;

pub mod fleet;
pub mod hooked;
pub mod recorded;
pub mod traces;

/// Requests being handled right now, and the most seen at once.
#[derive(Default)]
struct Load {
    active: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl Upstream {
    /// Starts a server answering every request with `script`.
    pub async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        Self::serve(listener, format!("http://{addr}"), script)
    }

    /// Serves the scripted app on `listener` (plain TCP, or TLS for [`tls::start`]).
    fn serve<L: axum::serve::Listener>(
        listener: L,
        url: String,
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Self
    where
        L::Addr: std::fmt::Debug,
    {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let record = seen.clone();
        let load: Arc<Load> = Arc::default();
        let counted = load.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let record = record.clone();
            let script = script.clone();
            let load = counted.clone();
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                let now = load.active.fetch_add(1, SeqCst) + 1;
                load.peak.fetch_max(now, SeqCst);
                let response = handle(request, &record, &*script).await;
                load.active.fetch_sub(1, SeqCst);
                response
            }
        });
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Upstream { seen, load, url }
    }

    /// The most requests this upstream was handling at the same time.
    pub fn peak_in_flight(&self) -> usize {
        self.load.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts a server echoing each request back as JSON (`method`, `path`, `query`, `body`,
    /// `headers`).
    pub async fn echo() -> Self {
        Self::start(|seen| {
            let headers: serde_json::Map<String, serde_json::Value> = seen
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            Reply::json(serde_json::json!({
                "method": seen.method.as_str(),
                "path": seen.path,
                "query": seen.query,
                "body": String::from_utf8_lossy(&seen.body),
                "headers": headers,
            }))
        })
        .await
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// How many requests were received.
    pub fn hits(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}

async fn handle(request: Request, record: &Mutex<Vec<Seen>>, script: &Script) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        at: tokio::time::Instant::now(),
    };
    let reply = script(&seen);
    record.lock().expect("lock").push(seen);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (reply.status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let Ok(v) = value.parse() {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// A real nginx (Debian's `nginx-light`) in front of an upstream, enforcing `limit_req` at a given
/// rate with `burst=1 nodelay` and answering 429 past it: an external referee for pacing.
/// Stopped when dropped.
pub struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl Nginx {
    /// Starts nginx on a free loopback port, proxying to `upstream` (`http://127.0.0.1:PORT`) and
    /// limiting requests to `per_second`.
    pub fn rate_limited(upstream: &str, per_second: u32) -> std::io::Result<Self> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "nginx is not installed: run `bash scripts/test` (it installs nginx-light) or `apt-get install nginx-light`",
                )
            })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "stitch-nginx-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let upstream = upstream.trim_start_matches("http://");
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  limit_req_zone $server_name zone=referee:1m rate={per_second}r/s;
  upstream app {{ server {upstream}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    server_name referee;
    location / {{
      limit_req zone=referee burst=1 nodelay;
      limit_req_status 429;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut nginx = Nginx { child, dir, port };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = nginx.child.try_wait()? {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "nginx exited with {status}: {log}"
                )));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::other(
                    "nginx did not start listening within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx.port = port;
        Ok(nginx)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw TCP server for faults an HTTP framework will not produce (a reset connection, a body
/// that trickles): `handler` gets each accepted connection.
pub async fn raw_server<F, Fut>(handler: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    format!("http://{addr}")
}

/// What a saturation run against a referee saw.
#[derive(Debug, Clone, Copy)]
pub struct Saturation {
    /// Calls that succeeded.
    pub accepted: u32,
    /// Calls the referee rejected with 429.
    pub rejected: u32,
    /// Wall time of the run, in seconds.
    pub seconds: f64,
}

impl Saturation {
    /// Accepted calls per second.
    pub fn rate(&self) -> f64 {
        f64::from(self.accepted) / self.seconds
    }
}

/// Calls `call` from `workers` concurrent tasks, back to back, for `run_for`; counts successes and
/// 429 rejections (any other error fails the run).
pub async fn saturate<F, Fut>(workers: usize, run_for: Duration, call: F) -> Saturation
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = stitch::Result<()>> + Send,
{
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let call = call.clone();
        tasks.spawn(async move {
            let (mut ok, mut rejected) = (0u32, 0u32);
            while started.elapsed() < run_for {
                match call().await {
                    Ok(()) => ok += 1,
                    Err(e) if e.status().map(|s| s.as_u16()) == Some(429) => {
                        println!("rejected at {:?}", started.elapsed());
                        rejected += 1;
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            (ok, rejected)
        });
    }
    let (mut accepted, mut rejected) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (o, r) = r.expect("worker");
        accepted += o;
        rejected += r;
    }
    Saturation {
        accepted,
        rejected,
        seconds: started.elapsed().as_secs_f64(),
    }
}
