//! OAuth2 client credentials (RFC 6749 §4.4), one token per process, or per fleet with a
//! shared store.
//!
//! Invariants: at most one token request is in flight per strategy in a process (a `tokio`
//! mutex held across it) and, with a shared store, in the fleet ([`super::fleet`]: the token is
//! claimed, fetched by one leader, stored sealed, and read by the others); callers never wait
//! while the current token is valid — within `skew` of expiry one background task fetches the
//! next token (refresh-ahead); a `401` forces a fetch only if the rejected token is still the
//! current one (compared by generation, and in the store by the stored bytes). The principal is
//! the client id and token URL, never the token. With the store unreachable, each process
//! fetches its own token (safe for client credentials: logged and counted).

use super::fleet::{self, Account};
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
    tokens: Tokens,
}

/// The in-process token holder.
#[derive(Default)]
struct Tokens {
    current: Mutex<Option<Token>>,
    /// Held across a token request: one fetch at a time, and a caller that waited re-checks.
    fetch: tokio::sync::Mutex<()>,
    /// A refresh-ahead task is running (at most one).
    ahead: AtomicBool,
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

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field(
                "token_url",
                &crate::http::redact::text(&self.inner.token_url),
            )
            .field("client_id", &self.inner.client_id)
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
                tokens: Tokens::default(),
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
                tokens: Tokens::default(),
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
}

impl Strategy for ClientCredentials {
    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential> {
        Box::pin(async move {
            let token = self.inner.token(cx).await?;
            request.set_credential_header("authorization", &format!("Bearer {}", token.value))?;
            Ok(Credential(token.generation))
        })
    }

    fn refresh<'a>(&'a self, failed: Credential, cx: &'a AuthContext) -> AuthFuture<'a, ()> {
        Box::pin(async move {
            self.inner
                .fetch_locked(cx, |current| {
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
    async fn token(self: &Arc<Self>, cx: &AuthContext) -> Result<Token> {
        let now = cx.now();
        let current = self
            .tokens
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(token) = current.filter(|t| t.valid(now)) {
            if token.refresh_at.is_some_and(|at| now >= at) {
                self.refresh_ahead(cx, token.generation);
            }
            return Ok(token);
        }
        self.fetch_locked(cx, |current| current.is_none_or(|t| !t.valid(cx.now())))
            .await
    }

    /// One background fetch; callers keep the still-valid token meanwhile. A failure is traced
    /// and left to the next caller (the old token stays until it expires).
    fn refresh_ahead(self: &Arc<Self>, cx: &AuthContext, generation: u64) {
        if self.tokens.ahead.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.tokens.ahead.store(false, Ordering::Release);
            return;
        };
        let (inner, cx) = (self.clone(), cx.clone());
        handle.spawn(async move {
            let outcome = inner
                .fetch_locked(&cx, |current| {
                    current.is_none_or(|t| t.generation <= generation)
                })
                .await;
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "OAuth2 refresh-ahead failed; the current token stays in use until it expires");
            }
            inner.tokens.ahead.store(false, Ordering::Release);
        });
    }

    /// Fetches a token unless, once the fetch lock is held, `needed` says the current one (which
    /// another caller may just have fetched) will do.
    async fn fetch_locked(
        &self,
        cx: &AuthContext,
        needed: impl Fn(Option<&Token>) -> bool,
    ) -> Result<Token> {
        let _one = self.tokens.fetch.lock().await;
        {
            let current = self
                .tokens
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !needed(current.as_ref()) {
                if let Some(token) = current.as_ref() {
                    return Ok(token.clone());
                }
            }
        }
        let held = self
            .tokens
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|t| t.stored.clone());
        let (value, lifetime, stored) = match Account::token(cx, &self.fleet_name()) {
            Some(account) => self.through_fleet(cx, &account, held.as_ref()).await?,
            None => {
                let (value, lifetime) = self.request(cx).await?;
                (value, lifetime, None)
            }
        };
        let fetched = cx.now();
        let mut current = self
            .tokens
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let token = Token {
            value,
            generation: current.as_ref().map_or(1, |t| t.generation + 1),
            expires_at: lifetime.map(|l| fetched + l),
            refresh_at: lifetime.map(|l| fetched + l - self.skew.min(l / 2)),
            stored,
        };
        *current = Some(token.clone());
        Ok(token)
    }

    /// The name of this client's token in the store: a digest of everything that makes the
    /// token what it is (URL, client, scope, audience, parameters), so two configurations never
    /// share one.
    fn fleet_name(&self) -> String {
        let mut h = blake3::Hasher::new_derive_key("stitch oauth2 token v1");
        for part in [
            self.token_url.as_str(),
            self.client_id.as_str(),
            self.scope.as_deref().unwrap_or("\0"),
            self.audience.as_deref().unwrap_or("\0"),
        ]
        .into_iter()
        .chain(
            self.params
                .iter()
                .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
        ) {
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
    ) -> Result<(Arc<str>, Option<Duration>, Option<bytes::Bytes>)> {
        let fetch = || async {
            let (value, lifetime) = self.request(cx).await?;
            Ok((
                value.as_bytes().to_vec(),
                lifetime.unwrap_or(UNSTATED_LIFETIME),
            ))
        };
        match fleet::obtain(cx, account, held, self.lease, "oauth2 token", fetch).await {
            Ok(found) => match String::from_utf8(found.plaintext) {
                Ok(token) => Ok((Arc::from(token), Some(found.ttl), Some(found.stored))),
                Err(_) => {
                    let (value, lifetime) = self.request(cx).await?;
                    Ok((value, lifetime, None))
                }
            },
            Err(fleet::Failure::Upstream(e)) => Err(e),
            Err(fleet::Failure::Store(why)) => {
                tracing::warn!(client = %self.client_id, reason = %why, "the shared store is unreachable: fetching a token for this process alone");
                fleet::degraded("oauth2", "token_per_instance");
                let (value, lifetime) = self.request(cx).await?;
                Ok((value, lifetime, None))
            }
        }
    }

    fn fail(
        &self,
        status: Option<http::StatusCode>,
        reason: String,
        body: &[u8],
        limit: usize,
    ) -> Error {
        let secret = self.secret.expose();
        let reason = format!("{reason} (client `{}`)", self.client_id);
        Error::Auth {
            // Replaced by the registered name when the runtime reports it.
            strategy: "oauth2".into(),
            status,
            reason,
            body: redacted_body(body, limit, &[&secret]),
        }
    }

    /// The token request: `POST token_url` with a form body; returns the token and its lifetime.
    async fn request(&self, cx: &AuthContext) -> Result<(Arc<str>, Option<Duration>)> {
        let limit = cx.error_body_limit();
        let secret = self.secret.expose();
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if !self.basic {
            form.push(("client_id", &self.client_id));
            form.push(("client_secret", &secret));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        for (k, v) in &self.params {
            form.push((k, v));
        }
        metrics::counter!("stitch_auth_token_requests_total", "strategy" => "oauth2").increment(1);
        let body = serde_urlencoded::to_string(&form).map_err(|e| {
            self.fail(
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
            // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
            let enc = |s: &str| serde_urlencoded::to_string([("", s)]).map(|t| t[1..].to_owned());
            let (Ok(id), Ok(pw)) = (enc(&self.client_id), enc(&secret)) else {
                return Err(self.fail(None, "the client id does not encode".into(), b"", limit));
            };
            let mut value = http::HeaderValue::from_str(&super::builtin::basic_value(&id, &pw))
                .map_err(|_| {
                    self.fail(
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
                Some(status),
                "the token response body could not be read".into(),
                b"",
                limit,
            )
        })?;
        if !status.is_success() {
            return Err(self.fail(
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
            self.fail(Some(status), "the token response is not an OAuth2 token (a JSON object with an `access_token` string)".into(), &bytes, limit)
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
