//! The [`Strategy`] trait, what a strategy sees ([`AuthRequest`], [`AuthContext`]) and the
//! runtime's wrapper around a registered strategy ([`Registered`]), which makes refreshes
//! single-flight per credential.

use super::AuthFuture;
use crate::http::redact::Secrets;
use crate::store::Store;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// Which credential a request was sent with: a generation that grows every time the strategy
/// replaces its credential (a fixed key is always generation 0). Handed back to
/// [`Strategy::refresh`] after a `401`, so a refresh for a credential already replaced is a no-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credential(pub u64);

/// Who a strategy's calls are made as: principal-scoped cache entries are keyed by it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Identity {
    /// The credential itself: the runtime keys entries by a hash of it keyed with the
    /// `principal_key` (never the value). Two different credentials are two principals.
    Credential(super::Secret),
    /// A stated identity (an account or OAuth2 client id, never a secret): survives credential
    /// rotation, and is the same in every process of a fleet.
    Named(String),
}

/// A request about to be sent, as an auth strategy sees it: method, URL (query included),
/// headers and body. Strategies may add headers or query pairs, or sign what they see.
pub struct AuthRequest<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) url: &'a mut url::Url,
    pub(crate) headers: &'a mut HeaderMap,
    pub(crate) body: Option<&'a [u8]>,
    pub(crate) secrets: &'a mut Secrets,
}

impl AuthRequest<'_> {
    /// The HTTP method.
    pub fn method(&self) -> &http::Method {
        self.method
    }

    /// The full URL, query included (for signing).
    pub fn url(&self) -> &url::Url {
        self.url
    }

    /// The headers set so far (runtime defaults, the stitch's, the call's).
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The body, when the request has one.
    pub fn body(&self) -> Option<&[u8]> {
        self.body
    }

    /// Sets a credential header (replacing any of the same name). The value is marked
    /// sensitive; it is never shown or stored. An invalid name or value fails the call with
    /// [`Error::Config`](crate::Error::Config) (the value is not shown).
    pub fn set_credential_header(&mut self, name: &str, value: &str) -> crate::Result<()> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| config(format!("`{name}` is not a valid header name")))?;
        let mut value = crate::http::request::header_value(value).ok_or_else(|| {
            config(format!(
                "the credential for header `{name}` is refused: {}",
                crate::http::request::HEADER_VALUE_RULE
            ))
        })?;
        value.set_sensitive(true);
        self.headers.insert(name, value);
        Ok(())
    }

    /// Appends a credential query pair; its value is redacted wherever the URL is shown or kept.
    pub fn add_credential_query(&mut self, key: &str, value: &str) {
        self.secrets.add(key);
        self.url.query_pairs_mut().append_pair(key, value);
    }

    /// Sets a header that is not a credential (a signature's timestamp, say).
    pub fn set_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.insert(name, value);
    }
}

fn config(reason: String) -> crate::Error {
    crate::Error::Config {
        stitch: "auth",
        reason,
    }
}

/// What a strategy may use besides the request: the runtime's HTTP client (for token requests
/// and logins), the shared store if one is attached, and the clock. Cheap to clone.
#[derive(Clone)]
pub struct AuthContext {
    pub(crate) http: reqwest::Client,
    pub(crate) store: Option<Arc<dyn Store>>,
    pub(crate) error_body_limit: usize,
}

impl AuthContext {
    /// The runtime's HTTP client (same connection pool, TLS settings and redirect policy).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// The runtime's shared store, if one is attached.
    pub fn store(&self) -> Option<&Arc<dyn Store>> {
        self.store.as_ref()
    }

    /// Now, on tokio's clock (so tests under `tokio::time::pause` drive expiry).
    pub fn now(&self) -> tokio::time::Instant {
        tokio::time::Instant::now()
    }

    /// How many bytes of a failed login's or token request's body an [`Error::Auth`](crate::Error::Auth)
    /// keeps (the runtime's `error_body_limit`).
    pub fn error_body_limit(&self) -> usize {
        self.error_body_limit
    }
}

/// An auth strategy: registered on the builder under a name
/// (`Runtime::builder().auth_strategy("acme", strategy)`) and used by the stitches that declare
/// `auth = "acme"`. The built-in ones are [`Bearer`](super::Bearer), [`ApiKey`](super::ApiKey),
/// [`Basic`](super::Basic) and [`ClientCredentials`](super::ClientCredentials).
///
/// The pipeline calls [`Strategy::apply`] on every attempt; after a `401` it calls
/// [`Strategy::refresh`] with the credential that failed — once per credential however many
/// calls failed with it at the same time (concurrent callers wait for that one refresh) — and
/// redoes the attempt once, not counted as a retry.
pub trait Strategy: Send + Sync + 'static {
    /// Puts the current credential on the request and says which one it was.
    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential>;

    /// Replaces credential `failed`, which the upstream rejected. The runtime never calls it twice
    /// for the same credential, nor for one older than a credential already refreshed; a
    /// strategy whose credential cannot change (a fixed key) keeps the default, which does nothing.
    fn refresh<'a>(&'a self, failed: Credential, cx: &'a AuthContext) -> AuthFuture<'a, ()> {
        let _ = (failed, cx);
        Box::pin(async { Ok(()) })
    }

    /// Who the calls are made as (see [`Identity`]). Asked by every principal-scoped cached call.
    fn identity(&self) -> Identity;
}

/// A registered strategy, as the pipeline calls it.
pub(crate) struct Registered {
    pub(crate) name: Arc<str>,
    strategy: Box<dyn Strategy>,
    /// The newest credential a refresh was run for: a refresh for it or an older one is a no-op.
    /// Held across the refresh, so concurrent `401`s on one credential wait for one refresh.
    refreshed: tokio::sync::Mutex<Option<Credential>>,
}

impl Registered {
    pub(crate) fn new(name: String, strategy: Box<dyn Strategy>) -> Self {
        Registered {
            name: Arc::from(name),
            strategy,
            refreshed: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn apply(
        &self,
        request: &mut AuthRequest<'_>,
        cx: &AuthContext,
    ) -> crate::Result<Credential> {
        self.strategy
            .apply(request, cx)
            .await
            .map_err(|e| self.named(e))
    }

    /// An [`Error::Auth`](crate::Error::Auth) names the strategy as registered, which the
    /// strategy itself does not know.
    fn named(&self, mut error: crate::Error) -> crate::Error {
        if let crate::Error::Auth { strategy, .. } = &mut error {
            *strategy = self.name.to_string();
        }
        error
    }

    /// Single-flight per credential: the first caller refreshes, callers that waited behind it
    /// with the same (or an older) credential return at once. A failed refresh is not recorded,
    /// so the next `401` tries again.
    pub(crate) async fn refresh(&self, failed: Credential, cx: &AuthContext) -> crate::Result<()> {
        let mut done = self.refreshed.lock().await;
        if done.is_some_and(|d| failed <= d) {
            return Ok(());
        }
        self.strategy
            .refresh(failed, cx)
            .await
            .map_err(|e| self.named(e))?;
        *done = Some(failed);
        Ok(())
    }

    /// The principal digest: a named identity hashed like `as_principal` bindings (unkeyed, the
    /// same in every process), a credential hashed with the principal key.
    pub(crate) fn principal(&self, key: &[u8; 32]) -> [u8; 32] {
        match self.strategy.identity() {
            Identity::Named(id) => {
                super::Principal::named(&format!("strategy:{}:{id}", self.name)).digest
            }
            Identity::Credential(secret) => {
                let mut h = blake3::Hasher::new_keyed(key);
                h.update(b"stitch strategy principal v1");
                for part in [self.name.as_bytes(), secret.expose().as_bytes()] {
                    h.update(&(part.len() as u64).to_le_bytes());
                    h.update(part);
                }
                *h.finalize().as_bytes()
            }
        }
    }
}

/// A prefix of a failed token request's or login's body for [`Error::Auth`](crate::Error::Auth):
/// at most `limit` bytes, every literal occurrence of `secrets` and the value of every
/// credential-named JSON field (`access_token`, `client_secret`, ...) replaced by `REDACTED`.
pub(crate) fn redacted_body(body: &[u8], limit: usize, secrets: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text) {
        redact_json(&mut json);
        text = json.to_string();
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, crate::http::redact::REDACTED);
    }
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let credential = super::is_credential_query_key(key)
                    || matches!(
                        key.to_ascii_lowercase().as_str(),
                        "refresh_token" | "id_token" | "password"
                    );
                if credential {
                    *v = serde_json::Value::String(crate::http::redact::REDACTED.into());
                } else {
                    redact_json(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_bodies_lose_credentials_and_are_bounded() {
        let body =
            br#"{"error":"invalid_client","access_token":"tok-1","detail":"secret s3 was wrong"}"#;
        let shown = redacted_body(body, 1024, &["s3"]);
        assert!(
            !shown.contains("tok-1") && !shown.contains("s3 "),
            "{shown}"
        );
        assert!(shown.contains("invalid_client"), "{shown}");
        assert_eq!(redacted_body("ééé".as_bytes(), 3, &[]), "é");
    }
}
