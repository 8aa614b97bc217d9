//! Hostile inputs at run time: path values stay one segment whatever they hold, header values go
//! out as written or not at all, error bodies and malformed JSON cost bounded memory and work, a
//! slow store or a long `Retry-After` never holds a call past its budget, every call has a
//! deadline, and each stitch keeps its own in-process state even when two share a `name`.

use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stitch::store::{MemoryStore, Store, StoreFuture};
use stitch::{Bytes, Error, Runtime, TimeoutBound};
use stitch_tests::{raw_server, Reply, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Path values: always exactly one encoded segment.

#[stitch::seam(base_url = "http://declared.invalid")]
trait Paths {
    #[stitch(get, path = "/p/{a}/{b}")]
    async fn two(&self, a: &str, b: &str) -> stitch::Result<String>;

    #[stitch(get, path = "/p/{a}/mid/{b}/end")]
    async fn inner(&self, a: &str, b: &str) -> stitch::Result<String>;
}

#[stitch::seam(timeout = "10s")]
trait Absolute {
    #[stitch(get, url = "http://stitch.test/abs/{a}/x/{b}")]
    async fn absolute(&self, a: &str, b: &str) -> stitch::Result<String>;
}

/// Reads one request head (GETs carry no body) off `stream` into `buf`; `None` at end of stream.
async fn read_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            buf.drain(..i + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw HTTP server answering every request with its request target exactly as it arrived on
/// the wire (no framework in between to normalize or decode it).
async fn request_target_server() -> String {
    raw_server(|mut stream| async move {
        let mut buf = Vec::new();
        while let Some(head) = read_head(&mut stream, &mut buf).await {
            let target = head.split(' ').nth(1).unwrap_or("").to_owned();
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{target}",
                target.len()
            );
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A raw segment's value: `None` unless it holds only RFC 3986 unreserved characters and `%XX`
/// escapes (no `/`, `?`, `#`, `%` on its own, ...).
fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Checks that `target` is `prefix` followed by exactly `layout`'s segments, where `None` marks a
/// value segment that must decode back to `value`.
fn assert_segments(target: &str, prefix: &str, layout: &[Option<&str>], value: &str) {
    let path = target
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{target:?} does not start with {prefix:?}"));
    let segments: Vec<&str> = path.split('/').collect();
    assert_eq!(
        segments.len(),
        layout.len(),
        "value {value:?} changed the route: {target:?}"
    );
    for (segment, expected) in segments.iter().zip(layout) {
        match expected {
            Some(literal) => assert_eq!(segment, literal, "value {value:?}: {target:?}"),
            None => assert_eq!(
                decode_segment(segment).as_deref(),
                Some(value),
                "value {value:?} was not sent as one encoded segment: {target:?}"
            ),
        }
    }
}

/// Every printable ASCII character and some non-ASCII ones, alone and inside longer values.
fn hostile_values() -> Vec<String> {
    let chars: Vec<char> = (0x20u8..=0x7e)
        .map(char::from)
        .chain(['é', '日', '🦀', '\u{a0}'])
        .collect();
    let mut values = Vec::new();
    for c in chars {
        // `.` and `..` alone are refused (they would change the route); tested below.
        if c != '.' {
            values.push(c.to_string());
        }
        values.push(format!("a{c}b"));
        values.push(format!("{c}{c}x"));
        values.push(format!("x{c}"));
    }
    values
}

#[tokio::test]
async fn every_character_stays_inside_its_path_segment() {
    let server = request_target_server().await;
    let runtime = Runtime::builder().base_url(&server).build().unwrap();
    let paths = PathsClient::new(&runtime).unwrap();
    let values = hostile_values();
    for value in &values {
        let v = value.as_str();
        let target = paths.two(v, v).await.unwrap();
        assert_segments(&target, "/", &[Some("p"), None, None], v);
        let target = paths.inner(v, v).await.unwrap();
        assert_segments(
            &target,
            "/",
            &[Some("p"), None, Some("mid"), None, Some("end")],
            v,
        );
    }
    // The one-character case of the report, spelled out.
    assert_eq!(paths.two("/", "/").await.unwrap(), "/p/%2F/%2F");

    for refused in ["", ".", ".."] {
        let error = paths.two(refused, "ok").await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument { argument: "a", .. }),
            "{refused:?}: {error}"
        );
    }
}

#[tokio::test]
async fn absolute_url_templates_encode_values_the_same_way() {
    // Through an HTTP proxy the request line carries the whole URL, so a fixed host works.
    let proxy = request_target_server().await;
    let http = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy).unwrap())
        .build()
        .unwrap();
    let runtime = Runtime::builder().http_client(http).build().unwrap();
    let client = AbsoluteClient::new(&runtime).unwrap();
    for value in &hostile_values() {
        let v = value.as_str();
        let target = client.absolute(v, v).await.unwrap();
        assert_segments(
            &target,
            "http://stitch.test/",
            &[Some("abs"), None, Some("x"), None],
            v,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Header values: sent as written, or refused before anything is sent.

#[stitch::seam(base_url = "http://declared.invalid")]
trait Headers {
    #[stitch(get, path = "/h")]
    async fn named(&self, #[header("x-name")] name: &str) -> stitch::Result<String>;
}

#[tokio::test]
async fn non_ascii_header_values_are_refused_before_sending() {
    let up =
        Upstream::start(|seen| Reply::bytes(seen.header("x-name").unwrap_or("").as_bytes())).await;
    let runtime = Runtime::builder().base_url(up.url()).build().unwrap();
    let client = HeadersClient::new(&runtime).unwrap();
    for refused in ["café", "日本", "line\nbreak", "nul\0", "del\x7f"] {
        let error = client.named(refused).await.unwrap_err();
        match &error {
            Error::InvalidArgument {
                argument, reason, ..
            } => {
                assert_eq!(*argument, "x-name");
                assert!(reason.contains("visible ASCII"), "{reason}");
                assert!(reason.contains("nothing was sent"), "{reason}");
            }
            other => panic!("{refused:?}: expected InvalidArgument, got {other}"),
        }
    }
    assert_eq!(up.hits(), 0, "a refused value must not reach the upstream");
    // Visible ASCII, spaces and tabs go out byte for byte.
    let sent = "Grace Hopper\t(1906) ~!#$%&'*+-.^_`|";
    assert_eq!(client.named(sent).await.unwrap(), sent);
    assert_eq!(up.hits(), 1);
}

#[test]
fn non_ascii_default_headers_are_refused_when_the_runtime_is_built() {
    let error = Runtime::builder()
        .default_header("x-team", "naïve")
        .build()
        .unwrap_err();
    match error {
        Error::Config { reason, .. } => {
            assert!(reason.contains("x-team"), "{reason}");
            assert!(reason.contains("visible ASCII"), "{reason}");
        }
        other => panic!("expected Config, got {other}"),
    }
}

/// A descriptor with a non-ASCII static header, as the macro would emit it were its own check
/// bypassed: the runtime refuses it too.
static STATIC_HEADER: stitch::Endpoint = {
    use stitch::__private as pv;
    pv::Endpoint::get("robustness::static_header", "/s", &["/s"]).headers(&[("x-static", "café")])
};

#[tokio::test]
async fn non_ascii_static_headers_are_refused_at_run_time() {
    use stitch::__private as pv;
    let up = Upstream::echo().await;
    let runtime = Runtime::builder().base_url(up.url()).build().unwrap();
    let core = pv::ClientCore::new(&runtime, &[]).unwrap();
    let error = pv::call::<pv::Text>(&core, pv::RequestParts::new(&STATIC_HEADER))
        .await
        .unwrap_err();
    match error {
        Error::Config { reason, .. } => {
            assert!(reason.contains("x-static"), "{reason}");
            assert!(reason.contains("visible ASCII"), "{reason}");
        }
        other => panic!("expected Config, got {other}"),
    }
    assert_eq!(up.hits(), 0);
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies: bounded memory and bounded work.

#[stitch::seam(base_url = "http://declared.invalid", timeout = "20s")]
trait Bodies {
    #[stitch(get, path = "/big")]
    async fn big(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/counted")]
    async fn counted(&self) -> stitch::Result<Counted>;
}

/// A server answering `500` with `head`, then writing `x` bytes (framed by `frame`) until `limit`
/// or until the client goes away; `written` counts the body bytes the socket accepted.
async fn hostile_error_server(
    head: &'static str,
    chunked: bool,
    written: Arc<AtomicU64>,
    finished: Arc<AtomicBool>,
) -> String {
    raw_server(move |mut stream| {
        let (written, finished) = (written.clone(), finished.clone());
        async move {
            let mut buf = Vec::new();
            if read_head(&mut stream, &mut buf).await.is_none() {
                return;
            }
            if stream.write_all(head.as_bytes()).await.is_ok() {
                let data = vec![b'x'; 64 << 10];
                let framed = if chunked {
                    let mut f = format!("{:x}\r\n", data.len()).into_bytes();
                    f.extend_from_slice(&data);
                    f.extend_from_slice(b"\r\n");
                    f
                } else {
                    data.clone()
                };
                // 50 MB with a declared length; endless when chunked.
                while chunked || written.load(SeqCst) < 50 << 20 {
                    if stream.write_all(&framed).await.is_err() {
                        break;
                    }
                    written.fetch_add(data.len() as u64, SeqCst);
                }
            }
            finished.store(true, SeqCst);
        }
    })
    .await
}

async fn assert_bounded_error_body(head: &'static str, chunked: bool) {
    let (written, finished) = (Arc::<AtomicU64>::default(), Arc::<AtomicBool>::default());
    let server = hostile_error_server(head, chunked, written.clone(), finished.clone()).await;
    let runtime = Runtime::builder().base_url(&server).build().unwrap();
    let client = BodiesClient::new(&runtime).unwrap();
    let error = client.big().await.unwrap_err();
    match &error {
        Error::Status { status, body, .. } => {
            assert_eq!(status.as_u16(), 500);
            assert_eq!(body.len(), 1024, "the error keeps the default 1 KiB prefix");
            assert!(body.bytes().all(|b| b == b'x'));
        }
        other => panic!("expected Status, got {other}"),
    }
    drop(client);
    drop(runtime);
    // The client stopped reading: the server's writes fail once the socket buffers are full.
    let waited = Instant::now();
    while !finished.load(SeqCst) {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the server was still writing after 20 s: the body is being read in full"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = written.load(SeqCst);
    // What the loopback socket buffers absorb, far below the 50 MB (or endless) body.
    assert!(
        sent < 16 << 20,
        "{sent} bytes of the error body were sent: it was read in full"
    );
}

#[tokio::test]
async fn a_huge_error_body_is_read_only_as_far_as_its_prefix() {
    assert_bounded_error_body(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 52428800\r\n\r\n",
        false,
    )
    .await;
}

#[tokio::test]
async fn an_endless_chunked_error_body_is_read_only_as_far_as_its_prefix() {
    assert_bounded_error_body(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
    )
    .await;
}

#[tokio::test]
async fn a_short_error_body_is_drained_and_its_connection_reused() {
    let connections = Arc::<AtomicUsize>::default();
    let counted = connections.clone();
    let server = raw_server(move |mut stream| {
        counted.fetch_add(1, SeqCst);
        async move {
            let mut buf = Vec::new();
            let body = "e".repeat(4000);
            while read_head(&mut stream, &mut buf).await.is_some() {
                let reply = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let runtime = Runtime::builder().base_url(&server).build().unwrap();
    let client = BodiesClient::new(&runtime).unwrap();
    for _ in 0..3 {
        match client.big().await.unwrap_err() {
            Error::Status { body, .. } => assert_eq!(body.len(), 1024),
            other => panic!("expected Status, got {other}"),
        }
    }
    // Read to its end (it is within the drain bound), so the connection went back to the pool.
    assert_eq!(connections.load(SeqCst), 1);
}

static DECODES: AtomicUsize = AtomicUsize::new(0);

/// Counts how many times a body is decoded.
#[derive(Debug)]
struct Counted;

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODES.fetch_add(1, SeqCst);
        Vec::<u32>::deserialize(d).map(|_| Counted)
    }
}

#[tokio::test]
async fn a_failing_body_is_decoded_at_most_once_more() {
    let malformed =
        Upstream::start(|_| Reply::bytes(b"[1, 2, 3").header("content-type", "application/json"))
            .await;
    let runtime = Runtime::builder()
        .base_url(malformed.url())
        .build()
        .unwrap();
    let client = BodiesClient::new(&runtime).unwrap();

    // Malformed JSON: the error says where (line, column); no second pass over the body.
    let error = client.counted().await.unwrap_err();
    assert!(matches!(error, Error::Decode { .. }), "{error}");
    assert!(error.to_string().contains("column"), "{error}");
    assert_eq!(
        DECODES.swap(0, SeqCst),
        1,
        "malformed JSON was decoded again"
    );

    // Valid JSON of the wrong shape: one more pass, to name the element.
    let shaped = Upstream::start(|_| {
        Reply::bytes(br#"[1, "two", 3]"#).header("content-type", "application/json")
    })
    .await;
    let runtime = Runtime::builder().base_url(shaped.url()).build().unwrap();
    let client = BodiesClient::new(&runtime).unwrap();
    match client.counted().await.unwrap_err() {
        Error::Decode { path, .. } => assert_eq!(path, "[1]"),
        other => panic!("expected Decode, got {other}"),
    }
    assert_eq!(DECODES.swap(0, SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// Waits are bounded: Retry-After is capped, every call has a deadline.

#[stitch::seam(base_url = "http://declared.invalid")]
trait Waits {
    #[stitch(get, path = "/busy", retry(attempts = 3, max = "1s"))]
    async fn busy(&self) -> stitch::Result<String>;

    #[stitch(get, path = "/silent")]
    async fn silent(&self) -> stitch::Result<String>;
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_fails_at_once_with_it() {
    let up = Upstream::start(|_| Reply::status(503, "busy").header("retry-after", "3600")).await;
    let runtime = Runtime::builder().base_url(up.url()).build().unwrap();
    let client = WaitsClient::new(&runtime).unwrap();
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(10), client.busy())
        .await
        .expect("the call waited for the upstream's hour")
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(up.hits(), 1, "a wait beyond `max` is not taken");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Accepts connections and never answers.
async fn silent_server() -> String {
    raw_server(|stream| async move {
        let _held = stream;
        std::future::pending::<()>().await;
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_times_out_at_the_default_total() {
    let server = silent_server().await;
    let runtime = Runtime::builder().base_url(&server).build().unwrap();
    let client = WaitsClient::new(&runtime).unwrap();
    let started = tokio::time::Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(3600), client.silent())
        .await
        .expect("a call without a timeout hung for an hour")
        .unwrap_err();
    match error {
        Error::Timeout { bound, after, .. } => {
            assert_eq!(bound, TimeoutBound::Total);
            assert_eq!(after, stitch::DEFAULT_TIMEOUT);
            assert_eq!(after, Duration::from_secs(30));
        }
        other => panic!("expected Timeout, got {other}"),
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(31),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_default_total_is_set_on_the_builder() {
    let server = silent_server().await;
    let runtime = Runtime::builder()
        .base_url(&server)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let client = WaitsClient::new(&runtime).unwrap();
    let started = tokio::time::Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(3600), client.silent())
        .await
        .expect("hung")
        .unwrap_err();
    assert!(
        matches!(error, Error::Timeout { after, .. } if after == Duration::from_secs(2)),
        "{error}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A slow store never stalls a call past its budget, and never delays the value.

#[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
struct Val {
    n: u32,
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait Slow {
    #[stitch(get, path = "/v", cache = "1m", timeout = "500ms")]
    async fn budgeted(&self) -> stitch::Result<Val>;

    #[stitch(get, path = "/w", cache = "1m")]
    async fn unbudgeted(&self) -> stitch::Result<Val>;

    #[stitch(
        get,
        path = "/c",
        timeout = "500ms",
        circuit(failures = 3, cooldown = "30s")
    )]
    async fn guarded(&self) -> stitch::Result<Val>;
}

/// A [`MemoryStore`] whose operations take their time.
#[derive(Clone)]
struct SlowStore {
    inner: MemoryStore,
    get: Duration,
    set: Duration,
    delete: Duration,
    sets_done: Arc<AtomicUsize>,
}

impl SlowStore {
    fn new(get: Duration, set: Duration, delete: Duration) -> Self {
        SlowStore {
            inner: MemoryStore::new(1000),
            get,
            set,
            delete,
            sets_done: Arc::default(),
        }
    }
}

impl Store for SlowStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            tokio::time::sleep(self.get).await;
            self.inner.get(key).await
        })
    }
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(self.set).await;
            let done = self.inner.set(key, value, ttl).await;
            self.sets_done.fetch_add(1, SeqCst);
            done
        })
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            tokio::time::sleep(self.delete).await;
            self.inner.delete(key).await
        })
    }
}

async fn value_upstream(delay: Duration) -> Upstream {
    Upstream::start(move |_| Reply::json(serde_json::json!({"n": 7})).after(delay)).await
}

#[tokio::test]
async fn a_slow_store_is_cut_off_at_the_store_timeout() {
    let up = value_upstream(Duration::ZERO).await;
    let three = Duration::from_secs(3);
    let store = SlowStore::new(three, three, three);
    let runtime = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .local_throttles() // a get/set/delete store: no fleet throttle verbs
        .build()
        .unwrap();
    let client = SlowClient::new(&runtime).unwrap();
    let limit = Duration::from_millis(1500);

    // Cache read (a miss after 250 ms), fetch, write behind: within the 500 ms timeout.
    let started = Instant::now();
    assert_eq!(client.budgeted().await.unwrap(), Val { n: 7 });
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());

    // The shared circuit's state: read within the store timeout, or the call is admitted.
    let started = Instant::now();
    assert_eq!(client.guarded().await.unwrap(), Val { n: 7 });
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());

    // Invalidation: the store delete is bounded too.
    let started = Instant::now();
    assert!(stitch::invalidate(client.budgeted()).await);
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn store_reads_count_against_the_calls_total() {
    let up = value_upstream(Duration::ZERO).await;
    let store = SlowStore::new(Duration::from_secs(3), Duration::ZERO, Duration::ZERO);
    let runtime = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .local_throttles() // a get/set/delete store: no fleet throttle verbs
        .store_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = SlowClient::new(&runtime).unwrap();
    let started = Instant::now();
    let error = client.budgeted().await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout { bound: TimeoutBound::Total, after, .. } if after == Duration::from_millis(500)),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_cache_write_never_delays_the_waiting_callers() {
    let up = value_upstream(Duration::from_millis(300)).await;
    let store = SlowStore::new(Duration::ZERO, Duration::from_secs(3), Duration::ZERO);
    let sets_done = store.sets_done.clone();
    let runtime = Runtime::builder()
        .base_url(up.url())
        .store(store)
        .local_throttles() // a get/set/delete store: no fleet throttle verbs
        .store_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let client = SlowClient::new(&runtime).unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.unbudgeted().await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), Val { n: 7 });
    }
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "the callers waited for the store write: {:?}",
        started.elapsed()
    );
    assert_eq!(up.hits(), 1, "the callers were coalesced");
    assert_eq!(sets_done.load(SeqCst), 0, "the write is still under way");
    // The write finishes behind the calls, within the store timeout.
    let waited = Instant::now();
    while sets_done.load(SeqCst) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(8),
            "the write never completed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Two stitches sharing a `name` keep separate in-process state.

#[stitch::seam(base_url = "http://declared.invalid")]
trait TwinA {
    #[stitch(
        get,
        path = "/stats",
        name = "stats",
        cache = "1m",
        pick = "a",
        throttle = "1/s"
    )]
    async fn stats(&self) -> stitch::Result<u32>;
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait TwinB {
    #[stitch(
        get,
        path = "/stats",
        name = "stats",
        cache = "1m",
        pick = "b",
        throttle = "1/s"
    )]
    async fn stats(&self) -> stitch::Result<u32>;
}

#[tokio::test(start_paused = true)]
async fn stitches_sharing_a_name_keep_their_own_cache_and_throttle() {
    let up = Upstream::start(|_| Reply::json(serde_json::json!({"a": 1, "b": 2}))).await;
    let runtime = Runtime::builder()
        .base_url(up.url())
        .pacing_clock(stitch::throttle::PacingClock::Tokio)
        .build()
        .unwrap();
    let (a, b) = (
        TwinAClient::new(&runtime).unwrap(),
        TwinBClient::new(&runtime).unwrap(),
    );
    let (ea, eb) = (TwinAClient::ENDPOINTS[0], TwinBClient::ENDPOINTS[0]);
    assert_eq!(ea.name(), eb.name());

    assert_eq!(a.stats().await.unwrap(), 1);
    assert_eq!(b.stats().await.unwrap(), 2);
    assert_eq!(up.hits(), 2);
    let seen = up.seen();
    assert!(
        seen[1].at - seen[0].at < Duration::from_millis(500),
        "the second stitch waited for the first one's throttle"
    );
    assert_eq!(runtime.cached_entries(ea), 1);
    assert_eq!(runtime.cached_entries(eb), 1);

    // Invalidating one leaves the other's entry alone.
    runtime.invalidate_stitch(ea);
    assert_eq!(runtime.cached_entries(ea), 0);
    assert_eq!(runtime.cached_entries(eb), 1);
    assert_eq!(b.stats().await.unwrap(), 2);
    assert_eq!(up.hits(), 2, "the second stitch's entry survived");
    // Each use of a descriptor is the same descriptor.
    assert!(std::ptr::eq(TwinAClient::ENDPOINTS[0], ea));
    assert!(!std::ptr::eq(ea, eb));
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait CircuitTwinA {
    #[stitch(
        get,
        path = "/fail",
        name = "twin",
        circuit(failures = 1, cooldown = "1m")
    )]
    async fn call(&self) -> stitch::Result<()>;
}

#[stitch::seam(base_url = "http://declared.invalid")]
trait CircuitTwinB {
    #[stitch(
        get,
        path = "/ok",
        name = "twin",
        circuit(failures = 1, cooldown = "1m")
    )]
    async fn call(&self) -> stitch::Result<()>;
}

#[tokio::test]
async fn stitches_sharing_a_name_keep_their_own_circuit() {
    let up = Upstream::start(|seen| {
        if seen.path == "/fail" {
            Reply::status(503, "down")
        } else {
            Reply::json(serde_json::json!(null))
        }
    })
    .await;
    let runtime = Runtime::builder().base_url(up.url()).build().unwrap();
    let (a, b) = (
        CircuitTwinAClient::new(&runtime).unwrap(),
        CircuitTwinBClient::new(&runtime).unwrap(),
    );
    assert!(a.call().await.is_err());
    assert_eq!(
        runtime.circuit_state(CircuitTwinAClient::ENDPOINTS[0]),
        "open"
    );
    assert!(matches!(
        a.call().await,
        Err(stitch::Error::CircuitOpen { .. })
    ));
    // The other stitch of the same name is healthy: its circuit is its own.
    assert_eq!(
        runtime.circuit_state(CircuitTwinBClient::ENDPOINTS[0]),
        "closed"
    );
    b.call().await.expect("the healthy twin is not failed fast");
    assert_eq!(up.hits(), 2);
}
