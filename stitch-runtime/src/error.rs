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
/// shared (sources are reference-counted). Match the variants you handle and pass the rest on:
///
/// ```no_run
/// #[stitch::seam(base_url = "https://api.example.com")]
/// trait Acme {
///     #[stitch(get, path = "/users/{id}", throttle(delegate))]
///     async fn user(&self, id: u64) -> stitch::Result<String>;
/// }
///
/// # async fn run(acme: AcmeClient) -> stitch::Result<()> {
/// match acme.user(7).await {
///     Ok(user) => println!("{user}"),
///     Err(stitch::Error::Status { status, .. }) if status == stitch::StatusCode::NOT_FOUND => {
///         println!("no user 7")
///     }
///     // `throttle(delegate)`: the upstream's 429, with its `Retry-After`.
///     Err(e @ stitch::Error::RateLimited { .. }) => println!("retry in {:?}", e.retry_after()),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// # fn main() {}
/// ```
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
    /// Its message names the cause (see [`Error::transport_cause`]).
    #[error("{stitch}: request to {url} failed: {}", TransportReason(source))]
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
    /// A fleet-wide throttle could not reach its store (or got no answer within the store
    /// timeout) and the runtime's outage policy is [`ThrottleOutage::Fail`](crate::throttle::ThrottleOutage::Fail)
    /// (the default): nothing was sent, so the fleet never exceeds its budget.
    #[error("{stitch}: the throttle's store is unreachable, so nothing was sent (`throttle_outage(ThrottleOutage::local(share))` paces in-process instead): {source}")]
    ThrottleUnavailable {
        /// The stitch's name.
        stitch: &'static str,
        /// The store's failure.
        #[source]
        source: crate::store::StoreError,
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
    /// An auth strategy could not obtain credentials: a token request or login failed (with the
    /// upstream's status and a prefix of its body, credentials in it redacted), or a transport
    /// error reached the token endpoint; or the call was refused because sending it would leak
    /// a credential (a redirect to another origin).
    #[error("auth strategy `{strategy}`: {reason}{}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Auth {
        /// The strategy's registered name (`Runtime::builder().auth_strategy(name, ..)`).
        strategy: String,
        /// The token endpoint's or login's status, when it answered.
        status: Option<http::StatusCode>,
        /// What failed.
        reason: String,
        /// The first bytes of the upstream's answer, credentials replaced by `REDACTED`.
        body: String,
    },
    /// Another instance of the fleet made this call's request (fleet-wide coalescing) and it
    /// failed: the outcome is shared for a moment (a short negative entry) rather than every
    /// instance repeating a request that just failed. A failed status arrives as
    /// [`Error::Status`] instead.
    #[error("{stitch}: the request another instance made for this call failed ({error_type}): {message}")]
    Shared {
        /// The stitch's name.
        stitch: &'static str,
        /// The other instance's `error.type` (see [`Error::error_type`]).
        error_type: String,
        /// The other instance's error message (redacted as every error message is).
        message: String,
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

/// `Retry-After` as a delay from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in
/// the past is a zero delay; anything unparsable is ignored. It lives here, not in `resilience`,
/// because [`Error::retry_after`] reads it and `resilience` already depends on this module.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds too large for `u64` are still a (very long) delay, not "no Retry-After".
        return Some(
            value
                .parse::<u64>()
                .map_or(Duration::MAX, Duration::from_secs),
        );
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
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
            Error::Status { headers, .. } => retry_after(headers),
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Why an [`Error::Transport`] happened: refused, timed out, TLS, DNS, unsupported scheme, ...
    pub fn transport_cause(&self) -> Option<TransportCause> {
        match self {
            Error::Transport { source, .. } => Some(TransportCause::of(source)),
            _ => None,
        }
    }

    /// A short, low-cardinality name of what went wrong, as the call span's `error.type` and
    /// the `outcome` label of `stitch_calls_total` carry it (OpenTelemetry's convention): the
    /// status code for [`Error::Status`] (`"503"`), the [`TransportCause`] for
    /// [`Error::Transport`] (`"connection_refused"`, `"tls"`, ...), otherwise the variant
    /// (`"timeout"`, `"decode"`, `"circuit_open"`, ...).
    pub fn error_type(&self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            Error::Status { status, .. } => return status.as_str().to_owned().into(),
            Error::Transport { source, .. } => TransportCause::of(source).as_str(),
            Error::Timeout { .. } => "timeout",
            Error::Decode { .. } => "decode",
            Error::Throttled { .. } => "throttled",
            Error::ThrottleUnavailable { .. } => "throttle_unavailable",
            Error::RateLimited { .. } => "rate_limited",
            Error::CircuitOpen { .. } => "circuit_open",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::UnexpectedContentType { .. } => "unexpected_content_type",
            Error::InvalidArgument { .. } => "invalid_argument",
            Error::Config { .. } => "config",
            Error::Auth { .. } => "auth",
            Error::Shared { error_type, .. } => return error_type.clone().into(),
        })
    }

    /// Whether this is a [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

/// Why a request could not be sent or its response not read ([`Error::transport_cause`]), read
/// from the HTTP client's error and its source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportCause {
    /// Nothing accepted the connection: no server listens on that host and port.
    ConnectionRefused,
    /// Connecting (or a timeout of a user-supplied HTTP client) ran out of time.
    TimedOut,
    /// The TLS handshake failed: an untrusted or invalid certificate, a host name the certificate
    /// does not cover, or a server that does not speak TLS.
    Tls,
    /// The host name did not resolve.
    Dns,
    /// The HTTP client cannot send to this URL's scheme (`https` in a build without TLS, or a
    /// user-supplied client restricted to `https`).
    UnsupportedScheme,
    /// The connection was reset or closed before the response was complete.
    ConnectionClosed,
    /// Anything else the HTTP client reported.
    Other,
}

impl TransportCause {
    /// A stable, lower-case name (`connection_refused`, `timeout`, `tls`, `dns`,
    /// `unsupported_scheme`, `connection_closed`, `transport`), as used for `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportCause::ConnectionRefused => "connection_refused",
            TransportCause::TimedOut => "timeout",
            TransportCause::Tls => "tls",
            TransportCause::Dns => "dns",
            TransportCause::UnsupportedScheme => "unsupported_scheme",
            TransportCause::ConnectionClosed => "connection_closed",
            TransportCause::Other => "transport",
        }
    }

    /// Classifies what reqwest reported. Typed checks first (reqwest's own predicates, I/O error
    /// kinds, the rustls error type); words of the inner messages only where no type is
    /// reachable (native-tls's errors, reqwest's private "URL scheme is not allowed").
    pub(crate) fn of(error: &reqwest::Error) -> Self {
        use std::io::ErrorKind as Kind;
        let https = error.url().is_some_and(|u| u.scheme() == "https");
        if https && !cfg!(any(feature = "rustls", feature = "native-tls")) {
            return TransportCause::UnsupportedScheme;
        }
        if error.is_timeout() {
            return TransportCause::TimedOut;
        }
        if error.is_dns() {
            return TransportCause::Dns;
        }
        let (mut closed, mut tls_words, mut scheme_words) = (false, false, false);
        for e in chain(error) {
            #[cfg(feature = "rustls")]
            if e.is::<rustls::Error>() {
                return TransportCause::Tls;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    Kind::ConnectionRefused => return TransportCause::ConnectionRefused,
                    Kind::TimedOut => return TransportCause::TimedOut,
                    Kind::ConnectionReset
                    | Kind::ConnectionAborted
                    | Kind::BrokenPipe
                    | Kind::UnexpectedEof => closed = true,
                    _ => {}
                }
            }
            // reqwest's own layers carry the URL in their message: never read words from it.
            if e.is::<reqwest::Error>() {
                continue;
            }
            let text = e.to_string().to_ascii_lowercase();
            scheme_words |= text.contains("scheme");
            // hyper's "connection closed before message completed" carries no I/O error.
            closed |= text.contains("connection closed") || text.contains("connection reset");
            tls_words |= ["certificate", "handshake", "tls", "ssl"]
                .iter()
                .any(|w| text.contains(w));
        }
        if scheme_words {
            TransportCause::UnsupportedScheme
        } else if https && tls_words && error.is_connect() {
            TransportCause::Tls
        } else if closed || error.is_body() {
            TransportCause::ConnectionClosed
        } else {
            TransportCause::Other
        }
    }
}

impl std::fmt::Display for TransportCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error in `error`'s source chain, `error` first. Looks inside `io::Error`s, whose
/// `source()` skips the error they wrap (where hyper-rustls puts the TLS error).
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

/// The `failed: …` part of [`Error::Transport`]'s message: the cause in words a user can act on,
/// with the innermost message (never reqwest's own, which carries the URL and so possibly a
/// secret query parameter).
struct TransportReason<'a>(&'a reqwest::Error);

impl std::fmt::Display for TransportReason<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let error = self.0;
        let detail = chain(error)
            .filter(|e| !e.is::<reqwest::Error>())
            .last()
            .map(|e| e.to_string());
        let detail = detail
            .as_deref()
            .unwrap_or("the HTTP client gave no detail");
        match TransportCause::of(error) {
            TransportCause::ConnectionRefused => {
                f.write_str("connection refused (is the server running on that host and port?)")
            }
            TransportCause::TimedOut => write!(f, "timed out ({detail})"),
            TransportCause::Tls if unknown_issuer(error) => write!(
                f,
                "TLS handshake failed: {detail} (the server's certificate is not signed by a \
                 trusted CA; trust a private CA with `RuntimeBuilder::root_certificates_pem`)"
            ),
            TransportCause::Tls => write!(f, "TLS handshake failed: {detail}"),
            TransportCause::Dns => write!(f, "DNS lookup failed: {detail}"),
            TransportCause::UnsupportedScheme
                if !cfg!(any(feature = "rustls", feature = "native-tls")) =>
            {
                f.write_str(
                    "`https` needs TLS, but stitch was built without its `rustls` (default) \
                     and `native-tls` features",
                )
            }
            TransportCause::UnsupportedScheme => {
                write!(
                    f,
                    "the HTTP client does not send this URL's scheme ({detail})"
                )
            }
            TransportCause::ConnectionClosed => {
                write!(
                    f,
                    "connection closed before the response was complete: {detail}"
                )
            }
            TransportCause::Other => f.write_str(detail),
        }
    }
}

/// Whether rustls refused the server's certificate for want of a trusted issuer: the one TLS
/// failure with a fix on the client side (trusting the CA).
fn unknown_issuer(error: &reqwest::Error) -> bool {
    #[cfg(feature = "rustls")]
    {
        chain(error).any(|e| {
            matches!(
                e.downcast_ref::<rustls::Error>(),
                Some(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer
                ))
            )
        })
    }
    #[cfg(not(feature = "rustls"))]
    {
        let _ = error;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds_and_dates() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    /// An HTTP-only build (`default-features = false`) names the missing feature instead of
    /// hyper's "invalid URL, scheme is not http". Runs with `--no-default-features`.
    #[cfg(not(any(feature = "rustls", feature = "native-tls")))]
    #[tokio::test]
    async fn https_without_tls_names_the_missing_feature() {
        let source = reqwest::Client::new()
            .get("https://127.0.0.1:9/")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            TransportCause::of(&source),
            TransportCause::UnsupportedScheme
        );
        let message = TransportReason(&source).to_string();
        assert!(message.contains("built without its `rustls`"), "{message}");
    }

    /// The reqwest layers' messages carry the URL, possibly a secret query parameter: the reason
    /// quotes only the layers below them.
    #[tokio::test]
    async fn the_reason_never_quotes_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let source = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/?api_key=hunter2"))
            .send()
            .await
            .unwrap_err();
        assert!(
            source.to_string().contains("hunter2"),
            "reqwest's own message has it"
        );
        let message = TransportReason(&source).to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
    }
}
