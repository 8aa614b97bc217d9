//! The cached-response record: how a response is kept in a shared store — status, headers and
//! the raw body, so any process can decode it into its own output type (whose fingerprint is in
//! the key). The cache owns this format; the store only sees opaque bytes.
//!
//! Invariants: a record never holds a secret in clear (the URL is already redacted, credential
//! response headers are dropped), and anything malformed or of another format version decodes to
//! `None`, which the cache treats as a miss.

use crate::http::response::RawResponse;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

const VERSION: u8 = 1;
/// A negative entry: the outcome of a fleet fill that failed (see [`encode_failure`]).
const FAILURE: u8 = 0xF1;

/// What a shared-store record holds.
pub(crate) enum Record {
    /// A 2xx response, to decode into the caller's type.
    Response(RawResponse),
    /// A failed upstream exchange, kept briefly so a fleet's waiters get the outcome instead of
    /// each repeating the request.
    Failure(Failure),
}

/// A failed upstream exchange as a negative entry holds it: no secret (the URL and messages are
/// already redacted by the pipeline; credential response headers are dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The status of an [`Error::Status`](crate::Error::Status); `None` for the other errors.
    pub(crate) status: Option<StatusCode>,
    /// The low-cardinality `error.type` of the leader's error.
    pub(crate) error_type: String,
    /// The leader's error message (its `Display`), or the status response's redacted URL.
    pub(crate) message: String,
    /// The status response's headers (credential ones are not encoded).
    pub(crate) headers: HeaderMap,
    /// The status response's body prefix.
    pub(crate) body: String,
}

impl Failure {
    /// The negative entry for `error`, when it is an outcome of the upstream exchange that every
    /// waiter would get too; `None` for errors of the leader's own situation (its throttle, its
    /// circuit, its budget, its configuration), which a waiter must not inherit.
    pub(crate) fn of(error: &crate::Error) -> Option<Failure> {
        use crate::Error;
        let mut failure = Failure {
            status: None,
            error_type: error.error_type().into_owned(),
            message: error.to_string(),
            headers: HeaderMap::new(),
            body: String::new(),
        };
        match error {
            Error::Status {
                status,
                url,
                headers,
                body,
                ..
            } => {
                failure.status = Some(*status);
                failure.message = url.clone();
                // Credential headers are left out when encoded (`put_headers`).
                failure.headers = (**headers).clone();
                failure.body = body.clone();
            }
            Error::Transport { .. }
            | Error::Decode { .. }
            | Error::BodyTooLarge { .. }
            | Error::UnexpectedContentType { .. } => {}
            _ => return None,
        }
        Some(failure)
    }

    /// The error a waiter of `endpoint` returns.
    pub(crate) fn to_error(&self, endpoint: &crate::Endpoint) -> crate::Error {
        match self.status {
            Some(status) => crate::Error::Status {
                stitch: endpoint.name,
                method: endpoint.method.as_str(),
                url: self.message.clone(),
                status,
                headers: Box::new(self.headers.clone()),
                body: self.body.clone(),
            },
            None => crate::Error::Shared {
                stitch: endpoint.name,
                error_type: self.error_type.clone(),
                message: self.message.clone(),
            },
        }
    }
}

/// Encodes a negative entry.
pub(crate) fn encode_failure(failure: &Failure) -> Bytes {
    let mut out = BytesMut::with_capacity(failure.body.len() + failure.message.len() + 128);
    out.put_u8(FAILURE);
    out.put_u16(failure.status.map_or(0, |s| s.as_u16()));
    put_bytes(&mut out, failure.error_type.as_bytes());
    put_bytes(&mut out, failure.message.as_bytes());
    // Already redacted as `Error::Status` shows them.
    put_headers(&mut out, &failure.headers, &[]);
    put_bytes(&mut out, failure.body.as_bytes());
    out.freeze()
}

/// A response record or a negative entry; `None` for anything malformed (a miss).
pub(crate) fn decode_any(data: Bytes) -> Option<Record> {
    match data.first() {
        Some(&FAILURE) => decode_failure(data).map(Record::Failure),
        _ => decode(data).map(Record::Response),
    }
}

fn decode_failure(mut data: Bytes) -> Option<Failure> {
    take(&mut data, 1)?;
    let status = take(&mut data, 2)?;
    let status = match u16::from_be_bytes([status[0], status[1]]) {
        0 => None,
        n => Some(StatusCode::from_u16(n).ok()?),
    };
    let text = |data: &mut Bytes| String::from_utf8(take_bytes(data)?.to_vec()).ok();
    let error_type = text(&mut data)?;
    let message = text(&mut data)?;
    let headers = take_headers(&mut data)?;
    let body = text(&mut data)?;
    data.is_empty().then_some(Failure {
        status,
        error_type,
        message,
        headers,
        body,
    })
}

pub(crate) fn encode(raw: &RawResponse) -> Bytes {
    let mut out = BytesMut::with_capacity(raw.body.len() + 256);
    out.put_u8(VERSION);
    out.put_u16(raw.status.as_u16());
    // Already redacted by the pipeline (no userinfo, no secret query values): a record never
    // holds a secret in clear.
    put_bytes(&mut out, raw.url.as_str().as_bytes());
    // A response header quoting back a secret the request sent (an echo of the query, of an API
    // key) is stored with it redacted, as errors show it.
    put_headers(&mut out, &raw.headers, &quotable(raw.sent.values()));
    put_bytes(&mut out, &raw.body);
    out.freeze()
}

/// The sent secrets looked for in a stored record's headers: from 4 bytes on (shorter ones are
/// too likely to be ordinary text, and replacing them would garble headers the response is read
/// by), as `http::redact::error_body` does for a cut-off prefix.
fn quotable(mut sent: Vec<String>) -> Vec<String> {
    sent.retain(|v| v.len() >= 4);
    sent
}

/// Writes the [`shareable`] ones of `headers`: their count, then each name and value (repeated
/// headers keep every value, in order), a value quoting one of `sent` with it replaced by
/// `REDACTED`. The headers the record is decoded by (`content-type`, `content-length`,
/// `content-encoding`) are kept as they are.
fn put_headers(out: &mut BytesMut, headers: &HeaderMap, sent: &[String]) {
    use reqwest::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
    out.put_u32(shareable(headers).count() as u32);
    for (name, value) in shareable(headers) {
        put_bytes(out, name.as_str().as_bytes());
        if sent.is_empty() || [CONTENT_TYPE, CONTENT_LENGTH, CONTENT_ENCODING].contains(name) {
            put_bytes(out, value.as_bytes());
            continue;
        }
        let text = String::from_utf8_lossy(value.as_bytes());
        match crate::http::redact::echoed(&text, sent) {
            std::borrow::Cow::Owned(shown) => put_bytes(out, shown.as_bytes()),
            std::borrow::Cow::Borrowed(_) => put_bytes(out, value.as_bytes()),
        }
    }
}

/// The headers a shared record may hold: response headers that hand out credentials (a session
/// cookie) are never written to a shared store, which every process of the fleet may read and
/// which holds them at rest.
fn shareable(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| !is_credential_response_header(name.as_str()))
}

/// Reads what [`put_headers`] wrote; `None` when malformed.
fn take_headers(data: &mut Bytes) -> Option<HeaderMap> {
    let count = u32_of(&take(data, 4)?);
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name = HeaderName::from_bytes(&take_bytes(data)?).ok()?;
        let value = HeaderValue::from_maybe_shared(take_bytes(data)?).ok()?;
        headers.append(name, value);
    }
    Some(headers)
}

/// Response headers whose values are credentials.
fn is_credential_response_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("set-cookie")
        || name.eq_ignore_ascii_case("set-cookie2")
        || name.eq_ignore_ascii_case("authentication-info")
        || name.eq_ignore_ascii_case("proxy-authentication-info")
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

/// `None` for anything malformed or from another format version: treated as a miss.
pub(crate) fn decode(mut data: Bytes) -> Option<RawResponse> {
    let version = take(&mut data, 1)?[0];
    if version != VERSION {
        return None;
    }
    let status = take(&mut data, 2)?;
    let status = StatusCode::from_u16(u16::from_be_bytes([status[0], status[1]])).ok()?;
    let url = url::Url::parse(std::str::from_utf8(&take_bytes(&mut data)?).ok()?).ok()?;
    let headers = take_headers(&mut data)?;
    let body = take_bytes(&mut data)?;
    data.is_empty().then_some(RawResponse {
        status,
        headers,
        url,
        body,
        sent: Default::default(),
    })
}

fn u32_of(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn take(data: &mut Bytes, n: usize) -> Option<Bytes> {
    (data.len() >= n).then(|| data.split_to(n))
}

fn take_bytes(data: &mut Bytes) -> Option<Bytes> {
    let len = u32_of(&take(data, 4)?) as usize;
    take(data, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> RawResponse {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("vary", HeaderValue::from_static("accept"));
        headers.append("vary", HeaderValue::from_static("accept-language"));
        headers.insert("set-cookie", HeaderValue::from_static("session=secret"));
        headers.insert(
            "Authentication-Info",
            HeaderValue::from_static("nextnonce=x"),
        );
        RawResponse {
            status: StatusCode::from_u16(203).unwrap(),
            headers,
            url: url::Url::parse("http://127.0.0.1:8080/users/7?page=2").unwrap(),
            body: Bytes::from_static(b"{\"id\":7}"),
            sent: Default::default(),
        }
    }

    #[test]
    fn round_trips_status_url_headers_and_body() {
        let back = decode(encode(&response())).expect("a record decodes");
        assert_eq!(back.status, 203);
        assert_eq!(back.url.as_str(), "http://127.0.0.1:8080/users/7?page=2");
        assert_eq!(back.body, &b"{\"id\":7}"[..]);
        assert_eq!(back.headers["content-type"], "application/json");
        // Repeated headers keep every value, in order.
        let vary: Vec<_> = back.headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["accept", "accept-language"]);
    }

    #[test]
    fn credential_response_headers_are_not_kept() {
        let bytes = encode(&response());
        let back = decode(bytes.clone()).unwrap();
        assert!(back.headers.get("set-cookie").is_none());
        assert!(back.headers.get("authentication-info").is_none());
        assert!(!bytes.windows(14).any(|w| w == b"session=secret"));
    }

    #[test]
    fn empty_body_and_no_headers_round_trip() {
        let raw = RawResponse {
            status: StatusCode::NO_CONTENT,
            headers: HeaderMap::new(),
            url: url::Url::parse("https://example.com/").unwrap(),
            body: Bytes::new(),
            sent: Default::default(),
        };
        let back = decode(encode(&raw)).unwrap();
        assert_eq!(back.status, StatusCode::NO_CONTENT);
        assert!(back.headers.is_empty() && back.body.is_empty());
    }

    #[test]
    fn negative_entries_round_trip_and_keep_no_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        headers.insert("set-cookie", HeaderValue::from_static("session=secret"));
        let failure = Failure {
            status: Some(StatusCode::SERVICE_UNAVAILABLE),
            error_type: "503".into(),
            message: "http://127.0.0.1/x".into(),
            headers,
            body: "down".into(),
        };
        let bytes = encode_failure(&failure);
        assert!(!bytes.windows(14).any(|w| w == b"session=secret"));
        let mut shared = failure.clone();
        shared.headers.remove("set-cookie");
        match decode_any(bytes.clone()) {
            Some(Record::Failure(back)) => assert_eq!(back, shared),
            _ => panic!("a negative entry decodes as one"),
        }
        for n in 0..bytes.len() {
            assert!(decode_any(bytes.slice(..n)).is_none(), "truncated at {n}");
        }
        assert!(matches!(
            decode_any(encode(&response())),
            Some(Record::Response(_))
        ));
    }

    #[test]
    fn malformed_records_are_misses_not_panics() {
        let good = encode(&response());
        // Every truncation, an extra trailing byte, another version, garbage and empty input.
        for n in 0..good.len() {
            assert!(decode(good.slice(..n)).is_none(), "truncated at {n}");
        }
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(decode(Bytes::from(longer)).is_none());
        let mut other_version = good.to_vec();
        other_version[0] = VERSION + 1;
        assert!(decode(Bytes::from(other_version)).is_none());
        assert!(decode(Bytes::new()).is_none());
        assert!(decode(Bytes::from_static(&[
            VERSION, 0, 200, 0xff, 0xff, 0xff, 0xff
        ]))
        .is_none());
        // A status out of range, an invalid URL and a header count far beyond the data.
        let mut bad_status = good.to_vec();
        bad_status[1..3].copy_from_slice(&9999u16.to_be_bytes());
        assert!(decode(Bytes::from(bad_status)).is_none());
        let mut bad_url = vec![VERSION, 0, 200];
        bad_url.extend_from_slice(&3u32.to_be_bytes());
        bad_url.extend_from_slice(b"::x");
        bad_url.extend_from_slice(&0u32.to_be_bytes());
        bad_url.extend_from_slice(&0u32.to_be_bytes());
        assert!(decode(Bytes::from(bad_url)).is_none());
        let mut many = vec![VERSION, 0, 200];
        let url = b"http://a/";
        many.extend_from_slice(&(url.len() as u32).to_be_bytes());
        many.extend_from_slice(url);
        many.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(Bytes::from(many)).is_none());
    }
}
