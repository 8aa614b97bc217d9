//! Sending one request and reading its response: the transport step of the call pipeline
//! (`call.rs` decides when and how often; this module does one send).
//!
//! Invariants: every URL that leaves this module (errors, their sources, `Response::url`, store
//! records) is redacted; a body is never read past the runtime's `max_response_bytes`, and an error
//! body costs at most `error_body_limit` bytes of memory and [`DRAIN_BOUND`] bytes of reading.

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::http::redact;
use crate::http::request::Prepared;
use crate::http::response::RawResponse;
use stitch_shared::is_credential_header; // not via `auth`, which builds on `http`

/// What sending needs from the runtime: its HTTP client and its bounds on reading a response.
/// Owned by the runtime and passed in by reference, so this module never reaches back up into it.
pub(crate) struct Transport {
    pub(crate) client: reqwest::Client,
    /// A success body longer than this is [`Error::BodyTooLarge`].
    pub(crate) max_response_bytes: usize,
    /// How much of an error body [`Error::Status`] keeps.
    pub(crate) error_body_limit: usize,
}

/// Sends the request and reads the whole body; a non-2xx status becomes [`Error::Status`].
///
/// The request is built before the returned future first runs (in [`start`]; reqwest sends
/// nothing until its pending request is polled), so the future holds the pending request, not
/// the request's parts: the call's future is moved through every layer of the pipeline, and each
/// move copies all of it (BENCHMARKS.md, per-call overhead). Inlined so that the future is built
/// in place where it is awaited rather than built here and copied.
#[inline(always)]
pub(crate) fn send<'a>(
    transport: &'a Transport,
    endpoint: &'static Endpoint,
    prepared: Prepared,
) -> impl std::future::Future<Output = Result<RawResponse>> + Send + 'a {
    let (pending, secrets, sent_credentials) = start(transport, endpoint, prepared);
    async move {
        // Every URL that leaves `send` (errors, their sources, `Response::url`, store records) is
        // redacted: no userinfo, no secret query values.
        let transport_error =
            |source| redact::transport(endpoint.name, endpoint.template, source, &secrets);
        let mut response = pending.await.map_err(transport_error)?;
        let status = response.status();
        let span = tracing::Span::current();
        span.record("status", status.as_u16());
        span.record("http.response.status_code", status.as_u16());
        // Moved, not cloned: the response is consumed by reading its body.
        let headers = std::mem::take(response.headers_mut());
        let final_url = redact::url(response.url(), &secrets);
        // Read here rather than in a helper `async fn`: each layer would keep its own copy of the
        // response in the call's future.
        let limit = transport.max_response_bytes;
        let too_large = || Error::BodyTooLarge {
            stitch: endpoint.name,
            limit,
        };
        let body_error = transport_error;
        if endpoint
            .delegate
            .is_some_and(|statuses| statuses.contains(&status.as_u16()))
            || !status.is_success()
        {
            return Err(failed(
                transport,
                endpoint,
                response,
                headers,
                final_url,
                secrets,
                sent_credentials,
            )
            .await);
        }
        // The URL as sent, kept only when redaction changed it (see `redact::Sent`).
        let sent_url = (final_url != *response.url()).then(|| response.url().clone());
        let body = match response.content_length() {
            Some(n) if n > limit as u64 => return Err(too_large()),
            // A declared length within the limit: hyper reads exactly that much, in one buffer.
            Some(_) => response.bytes().await.map_err(body_error)?,
            None => Box::pin(read_chunked(response, limit))
                .await
                .map_err(|e| e.map_or_else(too_large, body_error))?,
        };
        Ok(RawResponse {
            status,
            headers,
            url: final_url,
            body,
            sent: redact::Sent::new(secrets, sent_url, sent_credentials),
        })
    }
}

/// A response [`send`] does not read as a success: a status the stitch delegates to its
/// caller (rate limited), or a non-2xx status. Out of line and behind a pointer, so that neither
/// its code nor its state is part of every call's success path (code density, future size).
#[cold]
#[inline(never)]
fn failed<'a>(
    transport: &'a Transport,
    endpoint: &'static Endpoint,
    response: reqwest::Response,
    headers: http::HeaderMap,
    final_url: url::Url,
    secrets: redact::Secrets,
    sent_credentials: Vec<http::HeaderValue>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Error> + Send + 'a>> {
    Box::pin(async move {
        let status = response.status();
        if endpoint
            .delegate
            .is_some_and(|statuses| statuses.contains(&status.as_u16()))
        {
            // The body is not needed; drained within a bound so the connection can be reused.
            read_prefix(response, 0).await;
            return Error::RateLimited {
                stitch: endpoint.name,
                status,
                retry_after: crate::error::retry_after(&headers),
            };
        }
        // Upstreams often quote a rejected credential back (in the body or a header): every
        // secret this request carried is redacted from what the error keeps.
        let sent = redact::sent_values(Some(response.url()), &secrets, &sent_credentials);
        // Only the prefix the error keeps is read: a hostile or huge error body costs at most
        // `error_body_limit` bytes of memory (and `DRAIN_BOUND` bytes of reading).
        let prefix = read_prefix(response, transport.error_body_limit).await;
        let mut headers = headers;
        redact::error_headers(&mut headers, &final_url, &secrets, &sent);
        let truncated = prefix.len() >= transport.error_body_limit;
        Error::Status {
            stitch: endpoint.name,
            method: endpoint.method.as_str(),
            url: final_url.to_string(),
            status,
            headers: Box::new(headers),
            body: redact::error_body(&prefix, truncated, &sent),
        }
    })
}

/// [`send`]'s first step: the pending request, the secrets it carries, and the credential
/// headers it sends, kept to redact them from an error body or header that quotes them back
/// (clones share the values' bytes; no allocation for a call without credentials).
fn start(
    transport: &Transport,
    endpoint: &'static Endpoint,
    prepared: Prepared,
) -> (
    impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send,
    redact::Secrets,
    Vec<http::HeaderValue>,
) {
    let Prepared {
        url,
        headers,
        body,
        secrets,
        ..
    } = prepared;
    let mut sent_credentials: Vec<http::HeaderValue> = headers
        .iter()
        .filter(|(name, value)| value.is_sensitive() || is_credential_header(name.as_str()))
        .map(|(_, value)| value.clone())
        .collect();
    if !url.username().is_empty() || url.password().is_some() {
        sent_credentials.extend(userinfo_credentials(&url));
    }
    let mut builder = transport
        .client
        .request(endpoint.method.to_http(), url)
        .headers(headers);
    if let Some(body) = body {
        builder = builder.body(body);
    }
    (builder.send(), secrets, sent_credentials)
}

/// What a URL's userinfo goes out as: reqwest moves it into `authorization: Basic
/// base64(user:password)` (both percent-decoded) and removes it from the URL, so neither the
/// header nor the URL it answers with shows it. Kept with the request's credential headers — the
/// header, and the password alone — so an error quoting either back has it redacted.
fn userinfo_credentials(url: &url::Url) -> Vec<http::HeaderValue> {
    use base64::Engine as _;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let password = url.password().map(decode).unwrap_or_default();
    let credentials = format!("{}:{password}", decode(url.username()));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    [basic, password]
        .iter()
        .filter(|v| !v.is_empty())
        .filter_map(|v| http::HeaderValue::from_str(v).ok())
        .collect()
}

/// A body of unknown length, read chunk by chunk up to `limit` (`Err(None)`: over the limit).
async fn read_chunked(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<bytes::Bytes, Option<reqwest::Error>> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if body.len() + chunk.len() > limit {
            return Err(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// How much of an error body is read at most (the kept prefix included). A body that ends within
/// it is read to its end, so the connection goes back to the pool; a longer one is abandoned
/// (dropping the response closes its connection) rather than read in full.
const DRAIN_BOUND: usize = 64 << 10;

/// The first `keep` bytes of an error body, reading at most [`DRAIN_BOUND`] bytes. A read error
/// ends the body early: the status is what the caller gets, the prefix is only context.
async fn read_prefix(mut response: reqwest::Response, keep: usize) -> bytes::Bytes {
    let mut prefix = bytes::BytesMut::new();
    let mut read = 0usize;
    if response
        .content_length()
        .is_some_and(|n| n > DRAIN_BOUND as u64)
    {
        // Too long to drain: read only the prefix.
        while prefix.len() < keep {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(keep - prefix.len());
                    prefix.extend_from_slice(&chunk[..take]);
                }
                _ => break,
            }
        }
        return prefix.freeze();
    }
    while let Ok(Some(chunk)) = response.chunk().await {
        let take = chunk.len().min(keep.saturating_sub(prefix.len()));
        prefix.extend_from_slice(&chunk[..take]);
        read += chunk.len();
        if read > DRAIN_BOUND && prefix.len() >= keep {
            break;
        }
    }
    prefix.freeze()
}
