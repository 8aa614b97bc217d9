//! The [`Strategy`] trait, what a strategy sees ([`AuthRequest`], [`AuthContext`]) and the
//! runtime's wrapper around a registered strategy ([`Registered`]), which makes refreshes
//! single-flight per credential.

use super::seal::Sealing;
use super::AuthFuture;
use crate::http::redact::Secrets;
use crate::store::breaker::StoreBreaker;
use crate::store::keys::KeyLayout;
use crate::store::Store;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

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
    /// The principal the calling client is bound to (`client.as_principal(..)`).
    pub(crate) principal: Option<&'a str>,
}

impl AuthRequest<'_> {
    /// The principal the calling client is bound to (`client.as_principal("alice")`), if any:
    /// a strategy holding one credential per principal (a session) picks it by this.
    pub fn principal(&self) -> Option<&str> {
        self.principal
    }

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

    /// Sets a credential header built once by the strategy (already marked sensitive).
    pub(crate) fn set_prepared_credential(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.insert(name, value);
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

/// A response as a strategy sees it when asked whether it rejects the credential
/// ([`Strategy::rejected`]): the status, the headers and the body (for a non-2xx status, the
/// prefix an error keeps, at most the runtime's `error_body_limit` bytes).
pub struct AuthResponse<'a> {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
    /// The final URL (redacted), when the response is a success.
    pub(crate) url: Option<&'a url::Url>,
}

impl AuthResponse<'_> {
    /// The status.
    pub fn status(&self) -> http::StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The body (a prefix of it for a non-2xx status).
    pub fn body(&self) -> &[u8] {
        self.body
    }

    /// The URL that answered (after any same-origin redirect; secret query values redacted),
    /// for a successful response: what a `Set-Cookie`'s default domain and path are taken from.
    /// `None` for an error status.
    pub fn url(&self) -> Option<&url::Url> {
        self.url
    }
}

/// What a strategy may use besides the request: the runtime's HTTP client (for token requests
/// and logins), the shared store if one is attached, and the clock. Cheap to clone.
#[derive(Clone)]
pub struct AuthContext {
    pub(crate) http: reqwest::Client,
    pub(crate) store: Option<Arc<dyn Store>>,
    pub(crate) error_body_limit: usize,
    /// How credentials written to the store are sealed.
    pub(crate) sealing: Arc<Sealing>,
    pub(crate) layout: KeyLayout,
    /// The runtime's store breaker and timeout: an unreachable store costs one timeout, not one
    /// per login.
    pub(crate) breaker: Arc<StoreBreaker>,
    pub(crate) store_timeout: Duration,
    /// The fleet's fill notifications, subscribed once per runtime on first use.
    pub(crate) events: Arc<super::fleet::Events>,
    /// The runtime's `principal_key`: keys every principal named in a store key.
    pub(crate) principal_key: [u8; 32],
}

impl AuthContext {
    // Each argument is a separate piece of the runtime the context hands to strategies.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        http: reqwest::Client,
        store: Option<Arc<dyn Store>>,
        error_body_limit: usize,
        sealing: Sealing,
        layout: KeyLayout,
        breaker: Arc<StoreBreaker>,
        store_timeout: Duration,
        principal_key: [u8; 32],
    ) -> Self {
        AuthContext {
            http,
            store,
            error_body_limit,
            sealing: Arc::new(sealing),
            layout,
            breaker,
            store_timeout,
            events: Arc::default(),
            principal_key,
        }
    }

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
    /// at once for the same credential, nor again once a refresh of it succeeded; a refresh for
    /// a credential the strategy has already replaced must do nothing (a late rejection). A
    /// strategy whose credential cannot change (a fixed key) keeps the default, which does nothing.
    fn refresh<'a>(&'a self, failed: Credential, cx: &'a AuthContext) -> AuthFuture<'a, ()> {
        let _ = (failed, cx);
        Box::pin(async { Ok(()) })
    }

    /// Whether [`refresh`](Self::refresh) can replace a rejected credential. `false` for a fixed
    /// credential (a static token, key or password): a rejection is then final, reported at once
    /// without a second request, and a call keeps no copy of its request for a redo. The
    /// default is `true`.
    fn refreshes(&self) -> bool {
        true
    }

    /// Whether `response` says the credential is no longer accepted, so the runtime refreshes it
    /// and redoes the attempt once (not counted as a retry). Asked for every response of a
    /// stitch using the strategy, error statuses included; the default is a `401`. A session
    /// strategy adds its configured statuses and soft wall (a `200` login page).
    fn rejected(&self, response: &AuthResponse<'_>) -> bool {
        response.status() == http::StatusCode::UNAUTHORIZED
    }

    /// Takes a credential the upstream renewed on an accepted response — a session cookie it
    /// rolled or extended with a `Set-Cookie` — so the next request sends the renewed one (and,
    /// with a shared store, the fleet too). Asked for every successful response of a stitch using
    /// the strategy that [`rejected`](Self::rejected) did not reject, with the credential the
    /// request was sent with. Returns the work left to do (a store write), which the call
    /// awaits before it returns, or `None` when there is nothing to take (the default). An
    /// error of that work is logged, never the call's.
    fn renewed<'a>(
        &'a self,
        response: &AuthResponse<'_>,
        sent: Credential,
        cx: &'a AuthContext,
    ) -> Option<AuthFuture<'a, ()>> {
        let _ = (response, sent, cx);
        None
    }

    /// Who the calls are made as (see [`Identity`]). Asked by every principal-scoped cached call.
    fn identity(&self) -> Identity;

    /// Whether the strategy shares its credentials with the fleet through the runtime's store
    /// (a session, an OAuth2 token). A runtime with a store and such a strategy must say how
    /// they are kept at rest (`seal_key`, or `store_credentials_in_plaintext`), or it is refused
    /// when built. Default `false`.
    fn shares_credentials(&self) -> bool {
        false
    }
}

/// A registered strategy, as the pipeline calls it.
pub(crate) struct Registered {
    pub(crate) name: Arc<str>,
    strategy: Box<dyn Strategy>,
    /// One refresh per credential: the entry of a credential is held across its refresh, so
    /// concurrent rejections of it wait for that one refresh, and records that it was done.
    /// Per credential, not "the newest": a strategy with one credential per principal (a
    /// session) has several current credentials, and a refresh of one must not make the
    /// refresh of another, older-numbered one a no-op.
    refreshed: std::sync::Mutex<Vec<(Credential, Arc<tokio::sync::Mutex<bool>>)>>,
}

/// How many refreshed credentials a strategy remembers (enough for every principal refreshing
/// at once; an older entry forgotten only costs the strategy's own "already replaced" check).
const REMEMBERED: usize = 256;

impl Registered {
    pub(crate) fn new(name: String, strategy: Box<dyn Strategy>) -> Self {
        Registered {
            name: Arc::from(name),
            strategy,
            refreshed: std::sync::Mutex::default(),
        }
    }

    /// See [`Strategy::rejected`].
    pub(crate) fn rejected(&self, response: &AuthResponse<'_>) -> bool {
        self.strategy.rejected(response)
    }

    /// See [`Strategy::refreshes`].
    pub(crate) fn refreshes(&self) -> bool {
        self.strategy.refreshes()
    }

    /// See [`Strategy::renewed`]: the work to await, if any, its error logged.
    pub(crate) fn renewed<'a>(
        &'a self,
        response: &AuthResponse<'_>,
        sent: Credential,
        cx: &'a AuthContext,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'a> {
        let work = self.strategy.renewed(response, sent, cx)?;
        Some(async move {
            if let Err(e) = work.await {
                tracing::warn!(strategy = %self.name, error = %e, "a renewed credential could not be taken");
            }
        })
    }

    /// See [`Strategy::shares_credentials`].
    pub(crate) fn shares_credentials(&self) -> bool {
        self.strategy.shares_credentials()
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
    /// with the same credential return at once. A failed refresh is not recorded, so the next
    /// rejection tries again.
    pub(crate) async fn refresh(&self, failed: Credential, cx: &AuthContext) -> crate::Result<()> {
        let entry = {
            let mut entries = self.refreshed.lock().unwrap_or_else(|e| e.into_inner());
            match entries.iter().find(|(c, _)| *c == failed) {
                Some((_, entry)) => entry.clone(),
                None => {
                    if entries.len() >= REMEMBERED {
                        // Forget the oldest entry nobody is waiting on.
                        if let Some(i) = entries.iter().position(|(_, e)| Arc::strong_count(e) == 1)
                        {
                            entries.remove(i);
                        }
                    }
                    let entry = Arc::new(tokio::sync::Mutex::new(false));
                    entries.push((failed, entry.clone()));
                    entry
                }
            }
        };
        let mut done = entry.lock().await;
        if *done {
            return Ok(());
        }
        self.strategy
            .refresh(failed, cx)
            .await
            .map_err(|e| self.named(e))?;
        *done = true;
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
/// at most `limit` bytes, every occurrence of `secrets` — as they are, and in the encoded forms
/// a request carries them in and an upstream may quote them back in (form-urlencoded,
/// percent-encoded, inside a JSON string) — and the value of every credential-named JSON field
/// (`access_token`, `client_secret`, ...) replaced by `REDACTED`.
pub(crate) fn redacted_body(body: &[u8], limit: usize, secrets: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    if let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text) {
        redact_json(&mut json);
        text = json.to_string();
    }
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        // In a form value a space is `+`; percent-encoded elsewhere (`+` itself is `%2B`).
        let percent = form.replace('+', "%20");
        let json = serde_json::to_string(secret)
            .map(|quoted| quoted[1..quoted.len() - 1].to_owned())
            .unwrap_or_default();
        for shown in [secret.to_string(), form, percent, json] {
            if !shown.is_empty() && !forms.contains(&shown) {
                forms.push(shown);
            }
        }
    }
    // Longest first, so a form containing another is replaced whole.
    forms.sort_unstable_by_key(|f| std::cmp::Reverse(f.len()));
    for shown in &forms {
        text = text.replace(shown.as_str(), crate::http::redact::REDACTED);
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
