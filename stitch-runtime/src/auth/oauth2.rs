//! OAuth2 client credentials (RFC 6749 §4.4), one token per process, or per fleet with a
//! shared store.
//!
//! Invariants: at most one token request is in flight per token in a process (a `tokio` mutex
//! held across it) and, with a shared store, in the fleet ([`super::fleet`]: the token is
//! claimed, fetched by one leader, stored sealed, and read by the others); callers never wait
//! while the current token is valid — within `skew` of expiry one background task fetches the
//! next token (refresh-ahead); a `401` forces a fetch only if the rejected token is still the
//! current one (compared by generation, and in the store by the stored bytes). The principal is
//! the client id and token URL, never the token. With the store unreachable, each process
//! fetches its own token (safe for client credentials: logged and counted).
//!
//! With [`ClientCredentials::per_principal`] each principal has its own token, under the same
//! invariants: its own generation (unique across principals, so a refresh names one token), its
//! own fetch lock and refresh-ahead, its own store key (the principal keyed with the
//! `principal_key`), and at most `max_principals` of them in a process ([`super::principals`]).

use super::fleet::{self, Account};
use super::principals::{self, Entry, Principals};
use super::strategy::{redacted_body, AuthContext, AuthRequest, Credential, Identity, Strategy};
use super::{AuthFuture, Secret};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The default refresh-ahead margin: a token is replaced this long before it expires.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(30);

/// OAuth2 client credentials: fetches an access token from `token_url` and sends it as
/// `authorization: Bearer <token>`.
///
/// ```
/// use stitch::auth::{ClientCredentials, Secret};
///
/// # fn main() -> stitch::Result<()> {
/// let oauth = ClientCredentials::new(
///     "https://login.example.com/oauth2/token",
///     "my-client",
///     Secret::new("client-secret"), // or Secret::from_env("ACME_CLIENT_SECRET")?
/// )
/// .scope("orders:read")
/// .audience("https://api.example.com")
/// .basic_auth(); // client id and secret in an `authorization: Basic` header, not the body
/// let runtime = stitch::Runtime::builder().auth_strategy("acme", oauth).build()?;
/// # let _ = runtime;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

type ForPrincipal = dyn Fn(&str) -> Result<TokenRequest> + Send + Sync;

struct Inner {
    token_url: String,
    client_id: String,
    secret: Secret,
    scope: Option<String>,
    audience: Option<String>,
    params: Vec<(String, String)>,
    basic: bool,
    skew: Duration,
    lease: Duration,
    /// What a principal's token is requested with, when tokens are per principal.
    per_principal: Option<Arc<ForPrincipal>>,
    /// The tokens: the client's own (unbound), and with `per_principal` one per principal,
    /// bounded; generations unique across them, so a refresh names one token.
    tokens: Principals<Tokens>,
}

/// One principal's (or the client's) token in this process.
#[derive(Default)]
struct Tokens {
    current: Mutex<Option<Token>>,
    /// Held across a token request: one fetch at a time, and a caller that waited re-checks.
    fetch: tokio::sync::Mutex<()>,
    /// A refresh-ahead task is running (at most one).
    ahead: AtomicBool,
}

impl principals::State for Tokens {
    fn idle(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|t| !t.valid(Instant::now()))
    }
}

#[derive(Clone)]
struct Token {
    value: Arc<str>,
    generation: u64,
    expires_at: Option<Instant>,
    refresh_at: Option<Instant>,
    /// The sealed bytes it was stored as, when it came through the fleet.
    stored: Option<bytes::Bytes>,
}

/// How long a token without `expires_in` is kept in a shared store.
const UNSTATED_LIFETIME: Duration = Duration::from_secs(3600);

impl Token {
    fn valid(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// What one principal's token is requested with ([`ClientCredentials::per_principal`]): the
/// client's own settings, each of which it may override — another client id and secret, a
/// scope, an audience, extra parameters.
///
/// ```
/// use stitch::auth::{Secret, TokenRequest};
///
/// let request = TokenRequest::new()
///     .client("tenant-a", Secret::new("tenant-a-secret"))
///     .audience("https://api.example.com/tenants/a");
/// assert!(!format!("{request:?}").contains("tenant-a-secret"));
/// ```
#[derive(Clone, Default)]
pub struct TokenRequest {
    client: Option<(String, Secret)>,
    scope: Option<String>,
    audience: Option<String>,
    params: Vec<(String, String)>,
}

impl TokenRequest {
    /// The client's own settings, unchanged.
    pub fn new() -> Self {
        TokenRequest::default()
    }

    /// Another client id and secret (sent as the client sends its own: in the body, or as
    /// HTTP Basic with [`ClientCredentials::basic_auth`]).
    #[must_use]
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<Secret>) -> Self {
        self.client = Some((id.into(), secret.into()));
        self
    }

    /// The `scope` parameter, instead of the client's.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The `audience` parameter, instead of the client's.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// An extra form parameter; it replaces a client parameter of the same name.
    #[must_use]
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("TokenRequest")
            .field("client_id", &self.client.as_ref().map(|(id, _)| id))
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("params", &params)
            .finish_non_exhaustive()
    }
}

/// A token request's settings, resolved for one principal (or the client).
struct Resolved {
    client_id: String,
    secret: Secret,
    scope: Option<String>,
    audience: Option<String>,
    params: Vec<(String, String)>,
    principal: Option<Arc<str>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field(
                "token_url",
                &crate::http::redact::text(&self.inner.token_url),
            )
            .field("client_id", &self.inner.client_id)
            .field("per_principal", &self.inner.per_principal.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Client `client_id` with `secret`, sent in the form body (`client_secret_post`; see
    /// [`Self::basic_auth`]), refreshing [`DEFAULT_SKEW`] before expiry.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> Self {
        ClientCredentials {
            inner: Arc::new(Inner {
                token_url: token_url.into(),
                client_id: client_id.into(),
                secret: secret.into(),
                scope: None,
                audience: None,
                params: Vec::new(),
                basic: false,
                skew: DEFAULT_SKEW,
                lease: fleet::DEFAULT_LEASE,
                per_principal: None,
                tokens: Principals::new(principals::DEFAULT_MAX_PRINCIPALS),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        if Arc::get_mut(&mut self.inner).is_none() {
            // A clone being configured differently is another strategy: same settings so far,
            // its own tokens (never a setting silently dropped).
            let i = &*self.inner;
            self.inner = Arc::new(Inner {
                token_url: i.token_url.clone(),
                client_id: i.client_id.clone(),
                secret: i.secret.clone(),
                scope: i.scope.clone(),
                audience: i.audience.clone(),
                params: i.params.clone(),
                basic: i.basic,
                skew: i.skew,
                lease: i.lease,
                per_principal: i.per_principal.clone(),
                tokens: Principals::new(i.tokens.capacity()),
            });
        }
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
        }
        self
    }

    /// The `scope` parameter (space-separated scopes).
    #[must_use]
    pub fn scope(self, scope: impl Into<String>) -> Self {
        let scope = scope.into();
        self.edit(|i| i.scope = Some(scope))
    }

    /// The `audience` parameter (Auth0, Okta and others).
    #[must_use]
    pub fn audience(self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.edit(|i| i.audience = Some(audience))
    }

    /// An extra form parameter of the token request (`resource`, a tenant, ...).
    #[must_use]
    pub fn param(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let pair = (key.into(), value.into());
        self.edit(|i| i.params.push(pair))
    }

    /// Sends the client id and secret as HTTP Basic (`client_secret_basic`) instead of in the body.
    #[must_use]
    pub fn basic_auth(self) -> Self {
        self.edit(|i| i.basic = true)
    }

    /// How long before expiry the next token is fetched in the background (default
    /// [`DEFAULT_SKEW`]); at most half the token's lifetime is used, so a short-lived token is
    /// not refreshed continuously.
    #[must_use]
    pub fn skew(self, skew: Duration) -> Self {
        self.edit(|i| i.skew = skew)
    }

    /// With a shared store, the fleet lease of a token request (default 5 s): how soon another
    /// process takes over from one that crashed while fetching. Renewed every third of it while
    /// the request runs.
    #[must_use]
    pub fn lease_ttl(self, lease: Duration) -> Self {
        self.edit(|i| i.lease = lease.max(Duration::from_millis(3)))
    }

    /// One token per principal: calls of a client bound to a principal
    /// (`client.as_principal("alice")`) send a token requested with what `request` returns for
    /// it — the client's settings, or others ([`TokenRequest`]: another client id and secret,
    /// a scope, an audience, parameters). Each principal's token is cached, refreshed ahead and
    /// fetched once at a time — with a shared store once for the whole fleet, sealed like the
    /// client's — and two principals never get each other's token. `request` is asked before
    /// every token request of the principal (so rotated secrets are picked up); its error is the
    /// call's. Calls bound to no principal keep the client's own token. At most
    /// [`Self::max_principals`] principals' tokens are kept in a process.
    ///
    /// ```
    /// use stitch::auth::{ClientCredentials, Secret, TokenRequest};
    ///
    /// # fn main() -> stitch::Result<()> {
    /// let oauth = ClientCredentials::new("https://login.example.com/token", "app", Secret::new("s"))
    ///     .per_principal(|tenant: &str| {
    ///         Ok(TokenRequest::new().audience(format!("https://api.example.com/{tenant}")))
    ///     });
    /// let runtime = stitch::Runtime::builder().auth_strategy("acme", oauth).build()?;
    /// # let _ = runtime;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn per_principal(
        self,
        request: impl Fn(&str) -> Result<TokenRequest> + Send + Sync + 'static,
    ) -> Self {
        let request: Arc<ForPrincipal> = Arc::new(request);
        self.edit(|i| i.per_principal = Some(request))
    }

    /// How many principals' tokens a process keeps with [`Self::per_principal`] (default
    /// [`DEFAULT_MAX_PRINCIPALS`](super::DEFAULT_MAX_PRINCIPALS)): beyond it the least useful one
    /// is dropped, and an expired one is dropped when new principals arrive. A dropped
    /// principal's next call takes its token from the fleet's store, or requests a new one.
    #[must_use]
    pub fn max_principals(self, max: usize) -> Self {
        self.edit(|i| i.tokens = Principals::new(max))
    }
}

impl Strategy for ClientCredentials {
    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential> {
        Box::pin(async move {
            let principal = self.inner.per_principal.as_ref().and(request.principal());
            let entry = self.inner.tokens.get(principal);
            let token = self.inner.token(&entry, cx).await?;
            request.set_credential_header("authorization", &format!("Bearer {}", token.value))?;
            Ok(Credential(token.generation))
        })
    }

    fn refresh<'a>(&'a self, failed: Credential, cx: &'a AuthContext) -> AuthFuture<'a, ()> {
        Box::pin(async move {
            // The generation names the token (unique across principals); one no longer current
            // anywhere was already replaced.
            let Some(entry) = self.inner.tokens.by_generation(failed.0) else {
                return Ok(());
            };
            self.inner
                .fetch_locked(&entry, cx, |current| {
                    // Only the token that was rejected is replaced; a newer one is kept.
                    current.is_none_or(|t| t.generation <= failed.0)
                })
                .await
                .map(drop)
        })
    }

    fn identity(&self) -> Identity {
        Identity::Named(format!(
            "oauth2-client-credentials:{}@{}",
            self.inner.client_id, self.inner.token_url
        ))
    }

    fn shares_credentials(&self) -> bool {
        true
    }
}

impl Inner {
    /// The token to send now: the current one while valid (starting one background refresh when
    /// within `skew` of expiry), else a fresh one (single-flight).
    async fn token(
        self: &Arc<Self>,
        entry: &Arc<Entry<Tokens>>,
        cx: &AuthContext,
    ) -> Result<Token> {
        let now = cx.now();
        let current = entry
            .state
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(token) = current.filter(|t| t.valid(now)) {
            if token.refresh_at.is_some_and(|at| now >= at) {
                self.refresh_ahead(entry, cx, token.generation);
            }
            return Ok(token);
        }
        self.fetch_locked(entry, cx, |current| {
            current.is_none_or(|t| !t.valid(cx.now()))
        })
        .await
    }

    /// One background fetch; callers keep the still-valid token meanwhile. A failure is traced
    /// and left to the next caller (the old token stays until it expires).
    fn refresh_ahead(
        self: &Arc<Self>,
        entry: &Arc<Entry<Tokens>>,
        cx: &AuthContext,
        generation: u64,
    ) {
        if entry.state.ahead.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            entry.state.ahead.store(false, Ordering::Release);
            return;
        };
        let (inner, entry, cx) = (self.clone(), entry.clone(), cx.clone());
        handle.spawn(async move {
            let outcome = inner
                .fetch_locked(&entry, &cx, |current| {
                    current.is_none_or(|t| t.generation <= generation)
                })
                .await;
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "OAuth2 refresh-ahead failed; the current token stays in use until it expires");
            }
            entry.state.ahead.store(false, Ordering::Release);
        });
    }

    /// The settings of `principal`'s token request: the client's, overridden by what
    /// `per_principal` returns for it.
    fn resolve(&self, principal: Option<&Arc<str>>) -> Result<Resolved> {
        let mut resolved = Resolved {
            client_id: self.client_id.clone(),
            secret: self.secret.clone(),
            scope: self.scope.clone(),
            audience: self.audience.clone(),
            params: self.params.clone(),
            principal: principal.cloned(),
        };
        let (Some(for_principal), Some(principal)) = (&self.per_principal, principal) else {
            return Ok(resolved);
        };
        let request = for_principal(principal)?;
        if let Some((id, secret)) = request.client {
            resolved.client_id = id;
            resolved.secret = secret;
        }
        if request.scope.is_some() {
            resolved.scope = request.scope;
        }
        if request.audience.is_some() {
            resolved.audience = request.audience;
        }
        for (key, value) in request.params {
            resolved.params.retain(|(k, _)| *k != key);
            resolved.params.push((key, value));
        }
        Ok(resolved)
    }

    /// Fetches a token unless, once the fetch lock is held, `needed` says the current one (which
    /// another caller may just have fetched) will do.
    async fn fetch_locked(
        &self,
        entry: &Arc<Entry<Tokens>>,
        cx: &AuthContext,
        needed: impl Fn(Option<&Token>) -> bool,
    ) -> Result<Token> {
        let tokens = &entry.state;
        let _one = tokens.fetch.lock().await;
        let held = {
            let current = tokens.current.lock().unwrap_or_else(|e| e.into_inner());
            if !needed(current.as_ref()) {
                if let Some(token) = current.as_ref() {
                    return Ok(token.clone());
                }
            }
            current.as_ref().and_then(|t| t.stored.clone())
        };
        let resolved = self.resolve(entry.principal.as_ref())?;
        let (value, lifetime, stored) = match Account::token(cx, &self.fleet_name(&resolved, cx)) {
            Some(account) => {
                self.through_fleet(cx, &account, held.as_ref(), &resolved)
                    .await?
            }
            None => {
                let (value, lifetime) = self.request(cx, &resolved).await?;
                (value, lifetime, None)
            }
        };
        let fetched = cx.now();
        let token = Token {
            value,
            generation: self.tokens.next_generation(),
            expires_at: lifetime.map(|l| fetched + l),
            refresh_at: lifetime.map(|l| fetched + l - self.skew.min(l / 2)),
            stored,
        };
        *tokens.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        self.tokens.index(entry, token.generation);
        Ok(token)
    }

    /// The name of a token in the store: a digest of everything that makes the token what it is
    /// (URL, client, scope, audience, parameters), so two configurations never share one. A
    /// principal's token adds the principal, and its digest is keyed with the runtime's
    /// `principal_key`: the key reveals neither the principal nor lets a reader confirm a guess.
    fn fleet_name(&self, r: &Resolved, cx: &AuthContext) -> String {
        let mut h = match &r.principal {
            None => blake3::Hasher::new_derive_key("stitch oauth2 token v1"),
            Some(_) => {
                let mut h = blake3::Hasher::new_keyed(&cx.principal_key);
                h.update(b"stitch oauth2 principal token v1");
                h
            }
        };
        for part in [
            self.token_url.as_str(),
            r.client_id.as_str(),
            r.scope.as_deref().unwrap_or("\0"),
            r.audience.as_deref().unwrap_or("\0"),
        ]
        .into_iter()
        .chain(r.params.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
        .chain(r.principal.as_deref())
        {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().to_hex()[..32].to_owned()
    }

    /// The fleet's token: the stored one unless it is `held` (the one this process is replacing:
    /// expired, rejected, or due for refresh-ahead), else one fetched by the fleet's single
    /// leader. With the store unreachable this process fetches its own (client credentials may
    /// be used by several processes at once).
    async fn through_fleet(
        &self,
        cx: &AuthContext,
        account: &Account,
        held: Option<&bytes::Bytes>,
        resolved: &Resolved,
    ) -> Result<(Arc<str>, Option<Duration>, Option<bytes::Bytes>)> {
        let fetch = || async {
            let (value, lifetime) = self.request(cx, resolved).await?;
            Ok((
                value.as_bytes().to_vec(),
                lifetime.unwrap_or(UNSTATED_LIFETIME),
            ))
        };
        match fleet::obtain(cx, account, held, self.lease, "oauth2 token", fetch).await {
            Ok(found) => match String::from_utf8(found.plaintext) {
                Ok(token) => Ok((Arc::from(token), Some(found.ttl), Some(found.stored))),
                Err(_) => {
                    let (value, lifetime) = self.request(cx, resolved).await?;
                    Ok((value, lifetime, None))
                }
            },
            Err(fleet::Failure::Upstream(e)) => Err(e),
            Err(fleet::Failure::Store(why)) => {
                tracing::warn!(client = %resolved.client_id, reason = %why, "the shared store is unreachable: fetching a token for this process alone");
                fleet::degraded("oauth2", "token_per_instance");
                let (value, lifetime) = self.request(cx, resolved).await?;
                Ok((value, lifetime, None))
            }
        }
    }

    fn fail(
        &self,
        r: &Resolved,
        status: Option<http::StatusCode>,
        reason: String,
        body: &[u8],
        limit: usize,
    ) -> Error {
        let secret = r.secret.expose();
        let reason = format!("{reason} (client `{}`)", r.client_id);
        // With `basic_auth`, the `authorization: Basic <credentials>` the request carried may be
        // quoted back too: its credentials encode the secret.
        let basic = self.basic.then(|| basic_credentials(&r.client_id, &secret));
        let secrets: Vec<&str> = std::iter::once(&*secret)
            .chain(basic.iter().flatten().map(String::as_str))
            .collect();
        Error::Auth {
            // Replaced by the registered name when the runtime reports it.
            strategy: "oauth2".into(),
            status,
            reason,
            body: redacted_body(body, limit, &secrets),
        }
    }

    /// The token request: `POST token_url` with a form body; returns the token and its lifetime.
    async fn request(
        &self,
        cx: &AuthContext,
        r: &Resolved,
    ) -> Result<(Arc<str>, Option<Duration>)> {
        let limit = cx.error_body_limit();
        let secret = r.secret.expose();
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if !self.basic {
            form.push(("client_id", &r.client_id));
            form.push(("client_secret", &secret));
        }
        if let Some(scope) = &r.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &r.audience {
            form.push(("audience", audience));
        }
        for (k, v) in &r.params {
            form.push((k, v));
        }
        metrics::counter!("stitch_auth_token_requests_total", "strategy" => "oauth2").increment(1);
        let body = serde_urlencoded::to_string(&form).map_err(|e| {
            self.fail(
                r,
                None,
                format!("the token request does not encode: {e}"),
                b"",
                limit,
            )
        })?;
        let mut builder = cx
            .http_client()
            .post(&self.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if self.basic {
            let Some(credentials) = basic_credentials(&r.client_id, &secret) else {
                return Err(self.fail(r, None, "the client id does not encode".into(), b"", limit));
            };
            let mut value =
                http::HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
                    self.fail(
                        r,
                        None,
                        "the client credentials are not a valid header".into(),
                        b"",
                        limit,
                    )
                })?;
            value.set_sensitive(true);
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        let response = builder.send().await.map_err(|e| {
            // reqwest's message may carry the token URL, which has no secret; the body none.
            let cause = crate::error::TransportCause::of(&e).as_str();
            self.fail(
                r,
                None,
                format!(
                    "token request to `{}` failed: {cause}",
                    crate::http::redact::text(&self.token_url)
                ),
                b"",
                limit,
            )
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|_| {
            self.fail(
                r,
                Some(status),
                "the token response body could not be read".into(),
                b"",
                limit,
            )
        })?;
        if !status.is_success() {
            return Err(self.fail(
                r,
                Some(status),
                "the token endpoint refused the request".into(),
                &bytes,
                limit,
            ));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: Option<serde_json::Value>,
        }
        // serde's message is not shown: it may quote a value of the answer (a token).
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|_| {
            self.fail(r, Some(status), "the token response is not an OAuth2 token (a JSON object with an `access_token` string)".into(), &bytes, limit)
        })?;
        // Some servers send `expires_in` as a string.
        let lifetime = answer.expires_in.and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        });
        Ok((
            Arc::from(answer.access_token),
            lifetime.map(Duration::from_secs),
        ))
    }
}

/// The credentials of `client_secret_basic` as sent after `Basic ` (RFC 6749 §2.3.1: both parts
/// form-urlencoded, then Basic-encoded); `None` when one does not encode.
fn basic_credentials(client_id: &str, secret: &str) -> Option<String> {
    let enc = |s: &str| {
        serde_urlencoded::to_string([("", s)])
            .ok()
            .map(|t| t[1..].to_owned())
    };
    let value = super::builtin::basic_value(&enc(client_id)?, &enc(secret)?);
    value.strip_prefix("Basic ").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_configured_differently_keeps_its_settings() {
        let base = ClientCredentials::new("https://idp.test/token", "app", "secret");
        let tuned = base.clone().skew(Duration::from_secs(9)).scope("read");
        assert_eq!(tuned.inner.skew, Duration::from_secs(9));
        assert_eq!(tuned.inner.scope.as_deref(), Some("read"));
        assert_eq!(base.inner.skew, DEFAULT_SKEW, "the original is untouched");
        assert!(base.inner.scope.is_none());
    }
}
