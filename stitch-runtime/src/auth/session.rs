//! Cookie-session login: log in with a request built per principal, capture the `Set-Cookie`s of
//! the answer (parsed by the `cookie` crate: expiry, domain and path honoured), replay them as
//! `Cookie` on the requests they match, and log in again when the upstream says the session is
//! over (a configured status, `401` by default, or a soft wall such as a `200` login page).
//!
//! Invariants:
//! - One login at a time per principal in a process (a per-principal async mutex, re-checked
//!   after waiting), and with a shared store one per principal in the fleet ([`super::fleet`]):
//!   waiters replay the session the leader captured.
//! - A re-login is for the session that failed only: a `refresh` for a session already replaced
//!   (by this process or, through the store, by another) logs nothing in.
//! - Cookies are sent only where RFC 6265 sends them (domain and path match, `Secure` only over
//!   https, never past their expiry); two principals never share a session (the session key
//!   names the account, and the principal is part of it — in a store key only as a hash keyed
//!   with the runtime's `principal_key`).
//! - A `Set-Cookie` on an accepted response renews the session it was sent with ([`Strategy::renewed`]):
//!   a new value replaces it (a new generation, swapped into the shared store for the bytes it
//!   came from, never over another process's newer session), a new expiry extends it. A response
//!   to a session already replaced changes nothing.
//! - At most `max_principals` principals' sessions are kept in a process ([`super::principals`]).
//! - The password, the cookies and the login body are never in a `Debug`, an error or a trace;
//!   the identity is the session key (the account), never a secret.

use super::fleet::{self, Account};
use super::principals::{self, Entry, Principals};
use super::strategy::{
    redacted_body, AuthContext, AuthRequest, AuthResponse, Credential, Identity, Strategy,
};
use super::{AuthFuture, Secret};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a captured session is used when its cookies state no expiry (and the most it is used
/// when they do), unless [`CookieSession::ttl`] says otherwise.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30 * 60);

/// The login request of a [`CookieSession`], built by its closure for one principal: like a
/// `reqwest::RequestBuilder`, with fields sent as a form (the default) or a JSON object, and
/// secret values kept as [`Secret`]s so they are never shown.
///
/// ```
/// use stitch::auth::{LoginRequest, Secret};
///
/// let login = LoginRequest::post("https://app.example.com/login")
///     .field("user", "ada")
///     .secret_field("password", Secret::new("hunter2"))
///     .header("x-client", "stitch");
/// assert!(!format!("{login:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct LoginRequest {
    method: http::Method,
    url: String,
    headers: Vec<(String, Field)>,
    fields: Vec<(String, Field)>,
    json: bool,
}

#[derive(Clone)]
enum Field {
    Plain(String),
    Secret(Secret),
}

impl Field {
    fn value(&self) -> Arc<str> {
        match self {
            Field::Plain(v) => Arc::from(v.as_str()),
            Field::Secret(s) => s.expose(),
        }
    }
}

impl LoginRequest {
    /// A `POST` to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(http::Method::POST, url)
    }

    /// A login with another method (a `GET` with credentials in headers, a `PUT`).
    pub fn new(method: http::Method, url: impl Into<String>) -> Self {
        LoginRequest {
            method,
            url: url.into(),
            headers: Vec::new(),
            fields: Vec::new(),
            json: false,
        }
    }

    /// A body field (the user name, a tenant).
    #[must_use]
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push((name.into(), Field::Plain(value.into())));
        self
    }

    /// A secret body field (the password): redacted from any error quoting the login's answer.
    #[must_use]
    pub fn secret_field(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.fields.push((name.into(), Field::Secret(value.into())));
        self
    }

    /// Sends the fields as a JSON object of strings instead of a form.
    #[must_use]
    pub fn json(mut self) -> Self {
        self.json = true;
        self
    }

    /// A header of the login request.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), Field::Plain(value.into())));
        self
    }

    /// A secret header of the login request (an API key the login needs): marked sensitive.
    #[must_use]
    pub fn secret_header(mut self, name: impl Into<String>, value: impl Into<Secret>) -> Self {
        self.headers
            .push((name.into(), Field::Secret(value.into())));
        self
    }

    fn secrets(&self) -> Vec<Arc<str>> {
        self.fields
            .iter()
            .chain(&self.headers)
            .filter_map(|(_, f)| match f {
                Field::Secret(s) => Some(s.expose()),
                Field::Plain(_) => None,
            })
            .collect()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.fields.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("LoginRequest")
            .field("method", &self.method)
            .field("url", &crate::http::redact::text(&self.url))
            .field("fields", &names)
            .finish_non_exhaustive()
    }
}

/// What a [`CookieSession`] does when it needs a login and the shared store cannot be asked
/// (down, or not answering within the store timeout). A session still valid in the process keeps
/// being used whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialOutage {
    /// Ask the store again every half second for up to this long, then fail the call with
    /// [`Error::Auth`] (reason: the store is unreachable). The default (5 s): for logins that end
    /// the account's other sessions, or rotating credentials, where two processes logging in at
    /// once would log each other out.
    Wait(Duration),
    /// Log in from this process alone (logged and counted as
    /// `stitch_auth_degraded_total{decision="login_per_instance"}`): at most one login per
    /// process while the store is down. For upstreams that allow concurrent sessions.
    LoginPerInstance,
}

impl Default for CredentialOutage {
    fn default() -> Self {
        CredentialOutage::Wait(Duration::from_secs(5))
    }
}

/// How often a [`CredentialOutage::Wait`] asks the store again.
const WAIT_STEP: Duration = Duration::from_millis(500);

type LoginFn = dyn Fn(Option<&str>) -> Result<LoginRequest> + Send + Sync;
type WallFn = dyn Fn(&AuthResponse<'_>) -> bool + Send + Sync;

/// A cookie session: logs in, captures the session cookies, replays them, and logs in again
/// when the upstream rejects them.
///
/// The closure builds the login for a principal: the one a client is bound to
/// (`client.as_principal("alice")`), or `None`. Each principal has its own session; with a
/// shared store the fleet logs each one in once (sealed in the store: see
/// `Runtime::builder().seal_key(..)`).
///
/// ```
/// use stitch::auth::{CookieSession, LoginRequest, Secret};
///
/// # fn main() -> stitch::Result<()> {
/// let password = Secret::new("hunter2"); // or Secret::from_env("ACME_PASSWORD")?
/// let session = CookieSession::new("acme", move |principal: Option<&str>| {
///     Ok(LoginRequest::post("https://app.example.com/login")
///         .field("user", principal.unwrap_or("service"))
///         .secret_field("password", password.clone()))
/// })
/// .cookie("SID") // capture this cookie only (default: every cookie the login sets)
/// .relogin_on(&[401, 403])
/// .soft_wall(|r| r.status() == 200 && r.body().starts_with(b"<form id=\"login\""));
/// let runtime = stitch::Runtime::builder().auth_strategy("acme", session).build()?;
/// # let _ = runtime;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CookieSession {
    inner: Arc<Inner>,
}

struct Inner {
    key: String,
    login: Arc<LoginFn>,
    cookie: Option<String>,
    ttl: Duration,
    statuses: Vec<u16>,
    soft_wall: Option<Arc<WallFn>>,
    outage: CredentialOutage,
    lease: Duration,
    /// Sessions by principal (bounded; generations unique across principals, so a refresh
    /// names one session).
    principals: Principals<Slot>,
}

/// One principal's session in this process.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<Arc<Session>>>,
    /// Held across a login (or a wait for the fleet's): one at a time per principal.
    login: tokio::sync::Mutex<()>,
}

impl principals::State for Slot {
    fn idle(&self) -> bool {
        self.valid().is_none()
    }
}

/// A captured session.
struct Session {
    cookies: Vec<StoredCookie>,
    /// Wall clock, ms since the Unix epoch: the same meaning in every process.
    expires_ms: u64,
    generation: u64,
    /// The stored bytes it came from (sealed): a re-login compares them with the store's.
    stored: Option<bytes::Bytes>,
    /// The end of the session as `stored` says it (a renewal that only extends the session
    /// updates the store when this lags far behind).
    stored_expires_ms: u64,
}

/// A cookie as kept: RFC 6265's storage model, minus what a client library has no use for.
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct StoredCookie {
    #[serde(rename = "n")]
    name: String,
    #[serde(rename = "v")]
    value: String,
    /// Lower-case, no leading dot.
    #[serde(rename = "d")]
    domain: String,
    /// No `Domain` attribute: sent to exactly the login's host.
    #[serde(rename = "h")]
    host_only: bool,
    #[serde(rename = "p")]
    path: String,
    #[serde(rename = "s")]
    secure: bool,
    /// Wall clock ms, when the cookie states an expiry.
    #[serde(rename = "e", skip_serializing_if = "Option::is_none", default)]
    expires_ms: Option<u64>,
}

/// A session as stored in the shared store (sealed): cookies and when the session ends.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    c: Vec<StoredCookie>,
    x: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl std::fmt::Debug for CookieSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSession")
            .field("key", &self.inner.key)
            .field("cookie", &self.inner.cookie)
            .field("ttl", &self.inner.ttl)
            .field("relogin_on", &self.inner.statuses)
            .field("soft_wall", &self.inner.soft_wall.is_some())
            .finish_non_exhaustive()
    }
}

impl CookieSession {
    /// A session named `key` (the account it logs in as: sessions, and the store keys of a
    /// fleet, are keyed by it and the principal), logging in with the request `login` builds
    /// for a principal.
    pub fn new(
        key: impl Into<String>,
        login: impl Fn(Option<&str>) -> Result<LoginRequest> + Send + Sync + 'static,
    ) -> Self {
        CookieSession {
            inner: Arc::new(Inner {
                key: key.into(),
                login: Arc::new(login),
                cookie: None,
                ttl: DEFAULT_SESSION_TTL,
                statuses: vec![401],
                soft_wall: None,
                outage: CredentialOutage::default(),
                lease: fleet::DEFAULT_LEASE,
                principals: Principals::new(principals::DEFAULT_MAX_PRINCIPALS),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        if Arc::get_mut(&mut self.inner).is_none() {
            // A clone being configured differently is another strategy: same settings so far,
            // its own sessions (never a setting silently dropped).
            let i = &*self.inner;
            self.inner = Arc::new(Inner {
                key: i.key.clone(),
                login: i.login.clone(),
                cookie: i.cookie.clone(),
                ttl: i.ttl,
                statuses: i.statuses.clone(),
                soft_wall: i.soft_wall.clone(),
                outage: i.outage,
                lease: i.lease,
                principals: Principals::new(i.principals.capacity()),
            });
        }
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
        }
        self
    }

    /// Captures only cookie `name` from the login's answer (a login that does not set it
    /// fails), and takes only its renewals from later responses; by default every cookie the
    /// login sets is captured and replayed, and any cookie a later response sets, changes or
    /// removes renews the session (name the session cookie when the upstream also sets others
    /// on ordinary responses: each change is written to the shared store).
    #[must_use]
    pub fn cookie(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.edit(|i| i.cookie = Some(name))
    }

    /// The longest a captured session is used without the upstream renewing it (default
    /// [`DEFAULT_SESSION_TTL`]); a cookie's own `Max-Age` or `Expires` ends it sooner. A
    /// `Set-Cookie` for the session on an accepted response renews it: a new value replaces the
    /// session, a new expiry extends it, and either starts this TTL again.
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.edit(|i| i.ttl = ttl)
    }

    /// The statuses meaning "the session is over: log in again" (default `[401]`).
    #[must_use]
    pub fn relogin_on(self, statuses: &[u16]) -> Self {
        let statuses = statuses.to_vec();
        self.edit(|i| i.statuses = statuses)
    }

    /// A soft wall: a response that says the session is over without an error status (a `200`
    /// login page). Checked on every response of a stitch using this strategy; `true` logs in
    /// again and redoes the call once, like a `401`.
    #[must_use]
    pub fn soft_wall(
        self,
        predicate: impl Fn(&AuthResponse<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.edit(|i| i.soft_wall = Some(Arc::new(predicate)))
    }

    /// The fleet lease of a login (default 5 s): how soon another process takes over from one
    /// that crashed while logging in. Renewed every third of it while the login runs, so a
    /// slower login is still one login.
    #[must_use]
    pub fn lease_ttl(self, lease: Duration) -> Self {
        self.edit(|i| i.lease = lease.max(Duration::from_millis(3)))
    }

    /// How many principals' sessions a process keeps (default
    /// [`DEFAULT_MAX_PRINCIPALS`](super::DEFAULT_MAX_PRINCIPALS)): beyond it the least useful
    /// one is dropped, and an expired one is dropped when new principals arrive, so memory stays
    /// bounded however many principals a client is bound to. A dropped principal's next call
    /// takes the session from the fleet's store, or logs in again without one. The unbound
    /// client's session (no `as_principal`) is always kept.
    #[must_use]
    pub fn max_principals(self, max: usize) -> Self {
        self.edit(|i| i.principals = Principals::new(max))
    }

    /// What to do when a login is needed and the shared store is unreachable (default
    /// [`CredentialOutage::Wait`] for 5 s, then fail).
    #[must_use]
    pub fn store_outage(self, policy: CredentialOutage) -> Self {
        self.edit(|i| i.outage = policy)
    }
}

impl Strategy for CookieSession {
    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential> {
        Box::pin(async move {
            let entry = self.inner.principals.get(request.principal());
            let session = match entry.state.valid() {
                Some(session) => session,
                None => self.inner.obtain(&entry, None, cx).await?,
            };
            let pairs = session.header_for(request.url(), now_ms());
            if !pairs.is_empty() {
                let cookie = match request
                    .headers()
                    .get(http::header::COOKIE)
                    .and_then(|v| v.to_str().ok())
                {
                    Some(existing) if !existing.is_empty() => format!("{existing}; {pairs}"),
                    _ => pairs,
                };
                request.set_credential_header("cookie", &cookie)?;
            }
            Ok(Credential(session.generation))
        })
    }

    fn refresh<'a>(&'a self, failed: Credential, cx: &'a AuthContext) -> AuthFuture<'a, ()> {
        Box::pin(async move {
            // The generation names the session (they are unique across principals); a session
            // that is no longer current was already replaced: nothing to do.
            let Some(entry) = self.inner.principals.by_generation(failed.0) else {
                return Ok(());
            };
            let Some(stale) = entry.state.current().filter(|s| s.generation == failed.0) else {
                return Ok(());
            };
            self.inner.obtain(&entry, Some(stale), cx).await.map(drop)
        })
    }

    fn rejected(&self, response: &AuthResponse<'_>) -> bool {
        self.inner.statuses.contains(&response.status().as_u16())
            || self
                .inner
                .soft_wall
                .as_ref()
                .is_some_and(|wall| wall(response))
    }

    fn renewed<'a>(
        &'a self,
        response: &AuthResponse<'_>,
        sent: Credential,
        cx: &'a AuthContext,
    ) -> Option<AuthFuture<'a, ()>> {
        let mut lines = response
            .headers()
            .get_all(http::header::SET_COOKIE)
            .iter()
            .peekable();
        lines.peek()?;
        let url = response.url()?;
        let set_cookies: Vec<String> = lines
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let entry = self.inner.principals.by_generation(sent.0)?;
        let share = self.inner.renew(&entry, sent.0, url, &set_cookies, cx)?;
        Some(Box::pin(async move {
            self.inner.share(cx, share).await;
            Ok(())
        }))
    }

    fn identity(&self) -> Identity {
        Identity::Named(format!("cookie-session:{}", self.inner.key))
    }

    fn shares_credentials(&self) -> bool {
        true
    }
}

impl Slot {
    fn current(&self) -> Option<Arc<Session>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn valid(&self) -> Option<Arc<Session>> {
        self.current().filter(|s| now_ms() < s.expires_ms)
    }
}

/// A renewed session to swap into the shared store for the bytes it came from.
struct Share {
    account: Account,
    expected: bytes::Bytes,
    sealed: bytes::Bytes,
    ttl: Duration,
}

impl Inner {
    /// The account a principal's session is stored under: the session key, and a hash of the
    /// principal keyed with the runtime's `principal_key` (the principal's name may be personal
    /// data: a store key must not reveal it, nor let a reader confirm a guess; every process of
    /// a fleet shares that key, so they all name one principal's session alike).
    fn account(&self, principal: Option<&str>, cx: &AuthContext) -> String {
        match principal {
            None => self.key.clone(),
            Some(p) => {
                let mut h = blake3::Hasher::new_keyed(&cx.principal_key);
                h.update(b"stitch session principal v2");
                for part in [self.key.as_bytes(), p.as_bytes()] {
                    h.update(&(part.len() as u64).to_le_bytes());
                    h.update(part);
                }
                format!("{}/{}", self.key, &h.finalize().to_hex()[..32])
            }
        }
    }

    /// A session for `entry`: after waiting for any login in flight in this process, the current
    /// one if it is valid and not `stale`; else the fleet's (with a shared store) or a login.
    async fn obtain(
        &self,
        entry: &Arc<Entry<Slot>>,
        stale: Option<Arc<Session>>,
        cx: &AuthContext,
    ) -> Result<Arc<Session>> {
        let slot = &entry.state;
        let _one = slot.login.lock().await;
        if let Some(current) = slot.valid() {
            let replaced = stale
                .as_ref()
                .is_none_or(|s| s.generation != current.generation);
            if replaced {
                return Ok(current);
            }
        }
        let (wire, stored) = self
            .shared_or_login(entry.principal.as_deref(), stale.as_deref(), cx)
            .await?;
        let session = Arc::new(Session {
            cookies: wire.c,
            expires_ms: wire.x,
            generation: self.principals.next_generation(),
            stored,
            stored_expires_ms: wire.x,
        });
        *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
        self.principals.index(entry, session.generation);
        Ok(session)
    }

    /// Takes the `Set-Cookie`s of an accepted response to a request sent with session `sent`:
    /// a new value of a session cookie (or a cookie added or removed, when the whole jar is the
    /// session) replaces the session (a new generation); a new expiry only extends it. Cookies
    /// are taken as at login (domain, path and expiry honoured, a foreign `Domain` refused). A
    /// response to an older session than the current one changes nothing (a re-login or another
    /// renewal replaced it). Returns what to write to the shared store, if anything: a
    /// replacement, or an extension when the stored copy would end a quarter of the session's
    /// remaining life sooner than the session now does.
    fn renew(
        &self,
        entry: &Arc<Entry<Slot>>,
        sent: u64,
        url: &url::Url,
        set_cookies: &[String],
        cx: &AuthContext,
    ) -> Option<Share> {
        let current = entry.state.current().filter(|s| s.generation == sent)?;
        let now = now_ms();
        let (cookies, replaced) = merge(
            &current.cookies,
            url,
            set_cookies,
            now,
            self.cookie.as_deref(),
        )?;
        let alive = match &self.cookie {
            Some(name) => cookies.iter().any(|c| &c.name == name),
            None => !cookies.is_empty(),
        };
        // The upstream removed the session cookie: the session is over, the next call logs in.
        let expires_ms = if alive {
            cookies
                .iter()
                .filter_map(|c| c.expires_ms)
                .fold(now.saturating_add(self.ttl.as_millis() as u64), u64::min)
        } else {
            0
        };
        let lagging = expires_ms.saturating_sub(current.stored_expires_ms)
            >= expires_ms.saturating_sub(now) / 4
            && expires_ms > current.stored_expires_ms;
        let generation = if replaced {
            self.principals.next_generation()
        } else {
            current.generation
        };
        let mut share = None;
        if let (Some(expected), true) = (&current.stored, alive && (replaced || lagging)) {
            let wire = Wire {
                c: cookies.clone(),
                x: expires_ms,
            };
            let account = Account::session(cx, &self.account(entry.principal.as_deref(), cx));
            if let (Some(account), Ok(plaintext)) = (account, serde_json::to_vec(&wire)) {
                if let Some(sealed) = account.seal(cx, &plaintext) {
                    share = Some(Share {
                        account,
                        expected: expected.clone(),
                        sealed,
                        ttl: Duration::from_millis(expires_ms.saturating_sub(now).max(1)),
                    });
                }
            }
        }
        let renewed = Arc::new(Session {
            cookies,
            expires_ms,
            generation,
            stored: share
                .as_ref()
                .map(|s| s.sealed.clone())
                .or_else(|| current.stored.clone()),
            stored_expires_ms: if share.is_some() {
                expires_ms
            } else {
                current.stored_expires_ms
            },
        });
        {
            let mut slot = entry
                .state
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Replaced meanwhile (a re-login, another renewal): that one stays.
            if slot.as_ref().is_none_or(|s| s.generation != sent) {
                return None;
            }
            *slot = Some(renewed);
        }
        if replaced {
            self.principals.index(entry, generation);
            tracing::debug!(session = %self.key, "the upstream renewed the session cookie");
            metrics::counter!("stitch_auth_session_renewals_total", "strategy" => "cookie-session")
                .increment(1);
        }
        share
    }

    /// Writes a renewed session to the shared store in place of the one it renews; if another
    /// process replaced that one meanwhile, its session stays (the fleet converges on it at the
    /// next rejection). A failure is logged: the renewal still holds in this process.
    async fn share(&self, cx: &AuthContext, share: Share) {
        match share
            .account
            .replace(cx, &share.expected, share.sealed, share.ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(session = %self.key, "the stored session was replaced by another process; the renewal stays in this one");
            }
            Err(why) => {
                tracing::warn!(session = %self.key, reason = %why, "a renewed session could not be stored for the fleet");
                fleet::degraded("cookie-session", "renewal_not_stored");
            }
        }
    }
    /// The fleet's session (with a shared store) or this process's own login, and the stored
    /// bytes it came from.
    async fn shared_or_login(
        &self,
        principal: Option<&str>,
        stale: Option<&Session>,
        cx: &AuthContext,
    ) -> Result<(Wire, Option<bytes::Bytes>)> {
        let Some(account) = Account::session(cx, &self.account(principal, cx)) else {
            return Ok((self.login(principal, cx).await?, None));
        };
        let stale = stale.and_then(|s| s.stored.as_ref());
        let fetch = || async {
            let wire = self.login(principal, cx).await?;
            let lifetime = Duration::from_millis(wire.x.saturating_sub(now_ms()).max(1));
            let bytes = serde_json::to_vec(&wire)
                .map_err(|_| self.fail(None, "the session does not serialize".into()))?;
            Ok((bytes, lifetime))
        };
        let waited_since = tokio::time::Instant::now();
        loop {
            match fleet::obtain(cx, &account, stale, self.lease, "cookie session", fetch).await {
                Ok(found) => {
                    return match serde_json::from_slice::<Wire>(&found.plaintext) {
                        Ok(wire) => Ok((wire, Some(found.stored))),
                        Err(_) => {
                            // Written by an incompatible version: this process logs in alone.
                            tracing::warn!(session = %self.key, "a stored session does not parse; logging in from this process");
                            Ok((self.login(principal, cx).await?, None))
                        }
                    };
                }
                Err(fleet::Failure::Upstream(e)) => return Err(e),
                Err(fleet::Failure::Store(why)) => match self.outage {
                    CredentialOutage::LoginPerInstance => {
                        tracing::warn!(session = %self.key, reason = %why, "the shared store is unreachable: logging in from this process alone");
                        fleet::degraded("cookie-session", "login_per_instance");
                        return Ok((self.login(principal, cx).await?, None));
                    }
                    CredentialOutage::Wait(limit) => {
                        if waited_since.elapsed() + WAIT_STEP > limit {
                            fleet::degraded("cookie-session", "login_refused");
                            return Err(self.fail(
                                None,
                                format!(
                                    "the shared store is unreachable ({why}) and a login from this process alone could end the \
                                     fleet's session: the call fails rather than race (after waiting {limit:?}; \
                                     `CookieSession::store_outage(CredentialOutage::LoginPerInstance)` allows it)"
                                ),
                            ));
                        }
                        tokio::time::sleep(WAIT_STEP).await;
                    }
                },
            }
        }
    }

    fn fail(&self, status: Option<http::StatusCode>, reason: String) -> Error {
        Error::Auth {
            // Replaced by the registered name when the runtime reports it.
            strategy: "cookie-session".into(),
            status,
            reason: format!("{reason} (session `{}`)", self.key),
            body: String::new(),
        }
    }

    /// One login: sends the request the closure builds, captures the cookies it sets.
    async fn login(&self, principal: Option<&str>, cx: &AuthContext) -> Result<Wire> {
        let request = (self.login)(principal)?;
        let secrets = request.secrets();
        let secret_refs: Vec<&str> = secrets.iter().map(|s| &**s).collect();
        let limit = cx.error_body_limit();
        let fail = |status, reason: String, body: &[u8]| Error::Auth {
            strategy: "cookie-session".into(),
            status,
            reason: format!("{reason} (session `{}`)", self.key),
            body: redacted_body(body, limit, &secret_refs),
        };
        let shown_url = crate::http::redact::text(&request.url);
        let url = url::Url::parse(&request.url).map_err(|e| {
            fail(
                None,
                format!("the login URL `{shown_url}` is invalid: {e}"),
                b"",
            )
        })?;
        let mut builder = cx
            .http_client()
            .request(request.method.clone(), url.clone());
        for (name, field) in &request.headers {
            let mut value = http::HeaderValue::from_str(&field.value()).map_err(|_| {
                fail(
                    None,
                    format!("login header `{name}` is not a valid header value"),
                    b"",
                )
            })?;
            value.set_sensitive(matches!(field, Field::Secret(_)));
            builder = builder.header(name.as_str(), value);
        }
        if !request.fields.is_empty() {
            let values: Vec<(&str, Arc<str>)> = request
                .fields
                .iter()
                .map(|(n, f)| (n.as_str(), f.value()))
                .collect();
            let (content_type, body) = if request.json {
                let object: serde_json::Map<String, serde_json::Value> = values
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), serde_json::Value::from(&**v)))
                    .collect();
                (
                    "application/json",
                    serde_json::Value::Object(object).to_string(),
                )
            } else {
                let pairs: Vec<(&str, &str)> = values.iter().map(|(n, v)| (*n, &**v)).collect();
                let body = serde_urlencoded::to_string(&pairs)
                    .map_err(|_| fail(None, "the login form does not encode".into(), b""))?;
                ("application/x-www-form-urlencoded", body)
            };
            builder = builder
                .header(http::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        // A login answering with a redirect sets its cookies on the redirect itself: not
        // followed (see `super::without_redirects`), so they are seen.
        let response = super::without_redirects(builder.send())
            .await
            .map_err(|e| {
                let cause = crate::error::TransportCause::of(&e).as_str();
                fail(
                    None,
                    format!("the login request to `{shown_url}` failed: {cause}"),
                    b"",
                )
            })?;
        let status = response.status();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        if !(status.is_success() || status.is_redirection()) {
            let body = response.bytes().await.unwrap_or_default();
            return Err(fail(Some(status), "the login was refused".into(), &body));
        }
        drop(response);
        let now = now_ms();
        let mut cookies = capture(&url, &set_cookies, now);
        if let Some(name) = &self.cookie {
            cookies.retain(|c| &c.name == name);
            if cookies.is_empty() {
                return Err(fail(
                    Some(status),
                    format!("the login's answer does not set cookie `{name}`"),
                    b"",
                ));
            }
        } else if cookies.is_empty() {
            return Err(fail(
                Some(status),
                "the login's answer sets no cookie".into(),
                b"",
            ));
        }
        let ttl_end = now.saturating_add(self.ttl.as_millis() as u64);
        let expires = cookies
            .iter()
            .filter_map(|c| c.expires_ms)
            .fold(ttl_end, u64::min);
        tracing::debug!(session = %self.key, cookies = cookies.len(), "logged in");
        metrics::counter!("stitch_auth_logins_total", "strategy" => "cookie-session").increment(1);
        Ok(Wire {
            c: cookies,
            x: expires,
        })
    }
}

impl Session {
    /// `name=value; ...` of the cookies RFC 6265 sends to `url` (§5.4): domain and path
    /// match, `Secure` ones only over https, unexpired.
    fn header_for(&self, url: &url::Url, now: u64) -> String {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let path = url.path();
        let secure = url.scheme() == "https";
        let mut out = String::new();
        for c in &self.cookies {
            let domain_ok = if c.host_only {
                host == c.domain
            } else {
                domain_match(&host, &c.domain)
            };
            if domain_ok
                && path_match(path, &c.path)
                && (secure || !c.secure)
                && c.expires_ms.is_none_or(|e| now < e)
            {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                out.push_str(&c.name);
                out.push('=');
                out.push_str(&c.value);
            }
        }
        out
    }
}

/// The cookies a login answer at `url` sets (RFC 6265 §5.3): a `Domain` that does not cover the
/// login's host is refused, no `Domain` makes a host-only cookie, no `Path` takes the login path's
/// directory, `Max-Age` wins over `Expires`, and an already expired cookie removes its name.
fn capture(url: &url::Url, set_cookies: &[String], now: u64) -> Vec<StoredCookie> {
    let mut jar: Vec<StoredCookie> = Vec::new();
    for line in set_cookies {
        let Some((cookie, expired)) = parse(url, line, now) else {
            continue;
        };
        jar.retain(|c| !c.same_slot(&cookie));
        if !expired {
            jar.push(cookie);
        }
    }
    jar
}

/// The jar after an accepted response at `url` set `set_cookies`, by the rules of [`capture`];
/// with `only`, that cookie alone is taken. `None` when nothing changed; else the new jar and
/// whether the session was replaced (a value changed, or a cookie came or went) rather than
/// only extended (a new expiry, the same values).
fn merge(
    jar: &[StoredCookie],
    url: &url::Url,
    set_cookies: &[String],
    now: u64,
    only: Option<&str>,
) -> Option<(Vec<StoredCookie>, bool)> {
    let mut out = jar.to_vec();
    let (mut changed, mut replaced) = (false, false);
    for line in set_cookies {
        let Some((cookie, expired)) = parse(url, line, now) else {
            continue;
        };
        if only.is_some_and(|name| name != cookie.name) {
            continue;
        }
        match out.iter().position(|c| c.same_slot(&cookie)) {
            Some(i) if expired => {
                out.remove(i);
                (changed, replaced) = (true, true);
            }
            Some(i) => {
                if out[i].value != cookie.value {
                    (changed, replaced) = (true, true);
                } else if out[i] != cookie {
                    changed = true;
                }
                out[i] = cookie;
            }
            None if expired => {}
            None => {
                out.push(cookie);
                (changed, replaced) = (true, true);
            }
        }
    }
    changed.then_some((out, replaced))
}

/// One `Set-Cookie` line of a response at `url` (RFC 6265 §5.3), and whether it is already
/// expired (it removes its name); `None` when it does not parse or its `Domain` does not cover
/// the response's host.
fn parse(url: &url::Url, line: &str, now: u64) -> Option<(StoredCookie, bool)> {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let parsed = cookie::Cookie::parse(line).ok()?;
    let (domain, host_only) = match parsed.domain() {
        Some(d) if !d.is_empty() => {
            let d = d.trim_start_matches('.').to_ascii_lowercase();
            if !domain_match(&host, &d) {
                return None;
            }
            (d, false)
        }
        _ => (host, true),
    };
    let path = match parsed.path() {
        Some(p) if p.starts_with('/') => p.to_owned(),
        _ => default_path(url.path()),
    };
    let expires_ms = match (parsed.max_age(), parsed.expires_datetime()) {
        (Some(age), _) => Some(if age.whole_seconds() <= 0 {
            0
        } else {
            now.saturating_add(age.whole_seconds() as u64 * 1000)
        }),
        (None, Some(at)) => Some(u64::try_from(at.unix_timestamp()).unwrap_or(0) * 1000),
        (None, None) => None,
    };
    let expired = expires_ms.is_some_and(|e| e <= now);
    Some((
        StoredCookie {
            name: parsed.name().to_owned(),
            value: parsed.value().to_owned(),
            domain,
            host_only,
            path,
            secure: parsed.secure().unwrap_or(false),
            expires_ms,
        },
        expired,
    ))
}

impl StoredCookie {
    /// Same name, domain and path: a newer one replaces it (RFC 6265 §5.3 step 11).
    fn same_slot(&self, other: &StoredCookie) -> bool {
        self.name == other.name && self.domain == other.domain && self.path == other.path
    }
}

/// RFC 6265 §5.1.3: `host` is `domain`, or ends with `.domain` and is not an IP address.
fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host.parse::<std::net::IpAddr>().is_err())
}

/// RFC 6265 §5.1.4.
fn path_match(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request.as_bytes().get(cookie.len()) == Some(&b'/')))
}

/// RFC 6265 §5.1.4: the directory of the request path.
fn default_path(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_configured_differently_keeps_its_settings() {
        let base = CookieSession::new("acme", |_| {
            Ok(LoginRequest::new(
                http::Method::POST,
                "https://acme.test/login",
            ))
        });
        let tuned = base.clone().ttl(Duration::from_secs(7)).cookie("sid");
        assert_eq!(tuned.inner.ttl, Duration::from_secs(7));
        assert_eq!(tuned.inner.cookie.as_deref(), Some("sid"));
        assert_eq!(
            base.inner.ttl, DEFAULT_SESSION_TTL,
            "the original is untouched"
        );
        assert!(base.inner.cookie.is_none());
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn set_cookie_attributes_follow_rfc_6265() {
        let now = 1_700_000_000_000; // 2023, after the `Expires` date below
        let jar = capture(
            &url("https://app.example.com/auth/login"),
            &[
                "SID=s1; Path=/; HttpOnly".into(),
                "wide=w; Domain=.example.com; Max-Age=60; Path=/".into(),
                "evil=e; Domain=other.com".into(),
                "local=l".into(),
                "gone=g; Max-Age=0".into(),
                "sec=x; Secure; Path=/api".into(),
                "dated=d; Expires=Wed, 21 Oct 2015 07:28:00 GMT".into(),
            ],
            now,
        );
        let names: Vec<&str> = jar.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["SID", "wide", "local", "sec"],
            "foreign domain and expired refused"
        );
        let wide = &jar[1];
        assert_eq!(
            (wide.domain.as_str(), wide.host_only),
            ("example.com", false)
        );
        assert_eq!(wide.expires_ms, Some(now + 60_000));
        assert_eq!(jar[2].path, "/auth", "default path: the login's directory");
        let session = Session {
            cookies: jar,
            expires_ms: u64::MAX,
            generation: 1,
            stored: None,
            stored_expires_ms: u64::MAX,
        };
        assert_eq!(
            session.header_for(&url("https://app.example.com/api/x"), now),
            "SID=s1; wide=w; sec=x"
        );
        assert_eq!(
            session.header_for(&url("http://app.example.com/api/x"), now),
            "SID=s1; wide=w",
            "Secure only over https"
        );
        assert_eq!(
            session.header_for(&url("https://cdn.example.com/auth/y"), now),
            "wide=w",
            "host-only stays on its host"
        );
        assert_eq!(
            session.header_for(&url("https://app.example.com/auth/y"), now),
            "SID=s1; wide=w; local=l"
        );
        assert_eq!(
            session.header_for(&url("https://example.org/"), now),
            "",
            "another site gets nothing"
        );
        assert_eq!(
            session.header_for(&url("https://app.example.com/apix"), now),
            "SID=s1; wide=w",
            "path match is by segment"
        );
    }

    #[test]
    fn ip_hosts_never_domain_match_a_suffix() {
        assert!(domain_match("127.0.0.1", "127.0.0.1"));
        assert!(!domain_match("10.0.0.1", "0.0.1"));
        assert!(!domain_match("badexample.com", "example.com"));
        assert!(domain_match("a.example.com", "example.com"));
    }
}
