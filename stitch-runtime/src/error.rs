//! The one error type of stitch calls and runtime construction.
//!
//! Every variant names the stitch it came from and carries the context needed to act on it (status,
//! URL, a bounded body prefix, the JSON path that failed); sources are chained, never flattened
//! into strings. Credentials (header values) never appear in an error.

use std::sync::Arc;
use std::time::Duration;

/// `Result` with stitch's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which time bound a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutBound {
    /// The whole call's budget (`timeout = "..."` on the stitch or the runtime's default),
    /// covering throttle waits, backoff sleeps and every attempt.
    Total,
    /// One attempt's bound (`timeout(each = "...")`).
    Each,
}

impl std::fmt::Display for TimeoutBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutBound::Total => "total timeout",
            TimeoutBound::Each => "per-attempt timeout",
        })
    }
}

/// Everything that can go wrong in a stitch call.
///
/// `Clone`, because coalesced callers all receive the outcome of the one upstream request they
/// shared (sources are reference-counted).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The upstream answered with a status outside 2xx.
    #[error("{stitch}: {method} {url} returned {status}")]
    Status {
        /// The stitch's name.
        stitch: &'static str,
        /// The HTTP method sent.
        method: &'static str,
        /// The resolved URL.
        url: String,
        /// The status received.
        status: http::StatusCode,
        /// The response headers (boxed: keeps `Result<T>` small on the success path).
        headers: Box<http::HeaderMap>,
        /// The first bytes of the body (bounded by the runtime's `error_body_limit`), lossily UTF-8.
        body: String,
    },
    /// The request could not be sent or the response not read (connection refused, reset, ...).
    #[error("{stitch}: request to {url} failed")]
    Transport {
        /// The stitch's name.
        stitch: &'static str,
        /// The resolved URL.
        url: String,
        /// What the HTTP client reported.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// A time bound ran out before the call finished.
    #[error("{stitch}: {bound} of {after:?} elapsed")]
    Timeout {
        /// The stitch's name.
        stitch: &'static str,
        /// The bound that was hit.
        bound: TimeoutBound,
        /// Its length.
        after: Duration,
    },
    /// The body did not match the output type (or the `pick` path was missing).
    #[error("{stitch}: response body does not decode at `{path}`: {source}")]
    Decode {
        /// The stitch's name.
        stitch: &'static str,
        /// The JSON path that failed, e.g. `data.items[3].id` (`.` for the root).
        path: String,
        /// The decoder's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Waiting for the throttle would exceed `max_wait` or the call's remaining timeout.
    #[error("{stitch}: throttle wait{} exceeds the allowed {limit:?}", would_wait.map(|w| format!(" of {w:?}")).unwrap_or_default())]
    Throttled {
        /// The stitch's name.
        stitch: &'static str,
        /// How long the pacing wait would have been (`None` when waiting for a concurrency slot,
        /// whose length cannot be known in advance).
        would_wait: Option<Duration>,
        /// The bound that was exceeded.
        limit: Duration,
    },
    /// The upstream said to slow down (`throttle(delegate)`: a 429 or a configured status).
    #[error("{stitch}: rate limited by the upstream ({status}){}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// The stitch's name.
        stitch: &'static str,
        /// The status received.
        status: http::StatusCode,
        /// The parsed `Retry-After` (delta-seconds or HTTP-date), if sent.
        retry_after: Option<Duration>,
    },
    /// The circuit is open: the upstream failed repeatedly and calls fail fast for a cooldown.
    #[error("{stitch}: circuit open, calls fail fast for another {retry_in:?}")]
    CircuitOpen {
        /// The stitch's name.
        stitch: &'static str,
        /// Time until a trial call is admitted (zero while a trial is in flight).
        retry_in: Duration,
    },
    /// The response body is larger than the runtime's `max_response_bytes`.
    #[error("{stitch}: response body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The stitch's name.
        stitch: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// A JSON stitch received a body declared as something else.
    #[error("{stitch}: expected a JSON response, got content type `{content_type}`")]
    UnexpectedContentType {
        /// The stitch's name.
        stitch: &'static str,
        /// The `Content-Type` received.
        content_type: String,
    },
    /// An argument could not be encoded into the request (e.g. a header value with a line break).
    #[error("{stitch}: invalid argument `{argument}`: {reason}")]
    InvalidArgument {
        /// The stitch's name.
        stitch: &'static str,
        /// The argument's name.
        argument: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The runtime or a stitch is configured in a way that cannot produce a request
    /// (no base URL, an unparsable URL, ...).
    #[error("{stitch}: configuration error: {reason}")]
    Config {
        /// The stitch's name, or `runtime` for builder errors.
        stitch: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl Error {
    /// The HTTP status, for [`Error::Status`].
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The upstream's `Retry-After`, for a [`Error::Status`] or [`Error::RateLimited`] that sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { headers, .. } => crate::resilience::retry_after(headers),
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether this is a [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}
