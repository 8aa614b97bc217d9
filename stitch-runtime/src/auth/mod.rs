//! Who a call is made as, and how its credentials get onto the request.
//!
//! # Strategies
//!
//! A stitch names its auth strategy where the reader expects it: `#[stitch::seam(auth = "acme")]`
//! for every method, `#[stitch(auth = "acme")]` on one (the method's wins; `auth = "none"` opts a
//! method out). The name is resolved against the strategies registered on the builder,
//! `Runtime::builder().auth_strategy("acme", strategy)`; a client whose stitches name a strategy
//! the runtime lacks fails at `Client::new` with [`Error::Config`](crate::Error::Config) naming it
//! (a free stitch, on its call). Stitches that name none use the runtime-wide
//! [`Auth`] provider (`Runtime::builder().auth(..)`), if any.
//!
//! A [`Strategy`] sees the whole request ([`AuthRequest`]: method, URL with query, headers, body),
//! so it can put a key in the query or sign the request, and gets an [`AuthContext`] (the runtime's
//! HTTP client, its store, the clock). Built in: [`Bearer`], [`ApiKey`] (header, query or cookie),
//! [`Basic`] and OAuth2 [`ClientCredentials`]. Credentials come as a [`Secret`] (a value, an
//! environment variable, a file or a closure), whose `Debug` is `Secret(REDACTED)`.
//!
//! Refresh is single-flight per credential: `apply` reports which [`Credential`] (a generation)
//! it sent; after a `401` the runtime calls [`Strategy::refresh`] with it, holding a per-strategy
//! lock, and records it, so N concurrent `401`s on one credential cause one refresh and a refresh
//! for a credential already replaced is a no-op. The attempt is then redone once (not a retry).
//!
//! # Principals
//!
//! The principal scopes cache entries (one principal's response is never served to another) and
//! is made of every source of credentials a call can have: an explicit binding on the client
//! (`client.as_principal("alice")`), the stitch's strategy ([`Identity`]: a keyed hash of the
//! credential, or an identity it states) or else the runtime's `auth` provider (the identity it
//! states, or else a keyed hash of the credentials it applies), the runtime's default credential
//! headers and base-URL userinfo, and the call's own secret headers and query values (keyed
//! hashes of their values — never the secret itself). A call with none is anonymous.
//!
//! Invariant: a runtime with credentials is never anonymous, and two different credentials never
//! map to one principal; the same credentials under the same `principal_key` map to the same
//! principal in every process (so a fleet shares entries by sharing that key).
//!
//! # Redirects
//!
//! The runtime's own HTTP client follows redirects only within the origin (scheme, host and
//! port) of the request, at most 10; a redirect to another origin is not followed and ends the
//! call with [`Error::Status`](crate::Error::Status) (the `3xx`, its `Location` in the headers).
//! reqwest removes only `authorization` and `cookie` on such a hop, not an API key in a custom
//! header, so the one safe rule is not to hop. A client given with `http_client` keeps its own
//! policy: build it with `.redirect(stitch::auth::same_origin_redirects())`.
//!
//! # Sessions, and one login per fleet
//!
//! [`CookieSession`] logs in with a request built per principal, captures the `Set-Cookie`s and
//! replays them; a configured status or a soft wall ([`Strategy::rejected`]) logs in again, and a
//! `Set-Cookie` renewing the session on an ordinary response is taken ([`Strategy::renewed`]).
//! [`ClientCredentials::per_principal`] gives each principal its own OAuth2 token. Strategies
//! holding one credential per principal keep at most `max_principals` of them in a process
//! ([`DEFAULT_MAX_PRINCIPALS`]), and name a principal in a store key only by a hash keyed with
//! the runtime's `principal_key`. With
//! a shared store, a session and an OAuth2 token are filled once for the whole fleet (`fleet`:
//! claim, renewed lease, fenced completion, a notification to the waiters) and kept there
//! sealed ([`Keyring`]: XChaCha20-Poly1305, bound to the store key). A runtime with a store and
//! such a strategy is refused unless given a seal key (`Runtime::builder().seal_key(..)`) or
//! told to store credentials in plaintext (`store_credentials_in_plaintext()`).

mod builtin;
pub(crate) mod fleet;
mod oauth2;
mod principals;
mod seal;
mod secret;
mod session;
pub(crate) mod strategy;

pub use builtin::{ApiKey, Basic, Bearer};
pub use oauth2::{ClientCredentials, TokenRequest, DEFAULT_SKEW};
pub use principals::DEFAULT_MAX_PRINCIPALS;
pub(crate) use seal::Sealing;
pub use seal::{Keyring, SealError};
pub use secret::Secret;
pub use session::{CookieSession, CredentialOutage, LoginRequest, DEFAULT_SESSION_TTL};
pub use strategy::{AuthContext, AuthRequest, AuthResponse, Credential, Identity, Strategy};

tokio::task_local! {
    /// Set while a login request is sent: [`same_origin_redirects`] follows no redirect then.
    static NO_REDIRECT: ();
}

/// Sends `request` without following any redirect, when the client's policy is
/// [`same_origin_redirects`] (the runtime's own client): a login answering `302` with its
/// `Set-Cookie` must be seen, not followed. The policy runs inside the request's future, so a
/// task-local reaches it.
pub(crate) async fn without_redirects<F: std::future::Future>(request: F) -> F::Output {
    NO_REDIRECT.scope((), request).await
}

/// The redirect policy of the runtime's own HTTP client: follows at most 10 redirects, each
/// within the origin (scheme, host, port) of the previous URL; a redirect to another origin is
/// not followed (its `3xx` becomes the call's [`Error::Status`](crate::Error::Status)), so no
/// credential — an API key in any header, a cookie, a query key — is sent to another origin.
/// Give it to a client you pass to `Runtime::builder().http_client(..)`.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if NO_REDIRECT.try_with(|_| ()).is_ok() {
            return attempt.stop();
        }
        let same = attempt.previous().last().is_none_or(|previous| {
            let next = attempt.url();
            previous.scheme() == next.scheme()
                && previous.host_str() == next.host_str()
                && previous.port_or_known_default() == next.port_or_known_default()
        });
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if same {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

use http::HeaderMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A boxed future returned by [`Auth`] methods.
pub type AuthFuture<'a, T> = Pin<Box<dyn Future<Output = crate::Result<T>> + Send + 'a>>;

/// Credentials attached by the runtime to every request (`Runtime::builder().auth(...)`).
///
/// The pipeline calls [`Auth::apply`] on every attempt, and after a `401` calls [`Auth::refresh`]
/// once and redoes the attempt (the redo is not counted as a retry).
///
/// ```
/// use stitch::auth::{Auth, AuthFuture};
/// use stitch::HeaderMap;
///
/// /// A fixed API key, sent as `x-api-key`.
/// struct ApiKey(&'static str);
///
/// impl Auth for ApiKey {
///     fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()> {
///         Box::pin(async move {
///             headers.insert("x-api-key", self.0.parse().map_err(|_| stitch::Error::Config {
///                 stitch: "auth",
///                 reason: "the API key is not a valid header value".into(),
///             })?);
///             Ok(())
///         })
///     }
///
///     fn refresh(&self) -> AuthFuture<'_, ()> {
///         Box::pin(async { Ok(()) }) // a fixed key has nothing to refresh
///     }
///
///     // `principal` left as `None`: the principal is a keyed hash of the key itself.
/// }
///
/// # fn main() -> stitch::Result<()> {
/// let runtime = stitch::Runtime::builder().auth(ApiKey("k-123")).build()?;
/// # let _ = runtime;
/// # Ok(()) }
/// ```
pub trait Auth: Send + Sync + 'static {
    /// Adds credentials to a request about to be sent.
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()>;

    /// Obtains fresh credentials after the upstream rejected the current ones.
    fn refresh(&self) -> AuthFuture<'_, ()>;

    /// Who the credentials act as (a user or client id, never a secret): cache entries of
    /// principal-scoped stitches are keyed by it. Asked once, when the runtime is built, so the
    /// identity must not change during the provider's life.
    ///
    /// With `None` (the default) the principal is derived from the credentials themselves: the
    /// headers [`Auth::apply`] sets on an empty request, hashed with the runtime's
    /// `principal_key`, again after every [`Auth::refresh`]. State an identity when the
    /// credentials rotate (entries then survive a token refresh, and processes of a fleet that
    /// each obtain their own token share entries); leave `None` for a fixed key or token.
    fn principal(&self) -> Option<String> {
        None
    }
}

/// The runtime's `auth` provider, with the principal its calls are made as. Stands in for the
/// user's provider (it is what the pipeline calls) so that a `refresh` also retires the principal
/// derived from the old credentials.
pub(crate) struct Provider {
    inner: Arc<dyn Auth>,
    /// From [`Auth::principal`], when the provider states one.
    stated: Option<[u8; 32]>,
    key: [u8; 32],
    /// Bumped by every `refresh`: a derived principal of an older epoch is stale.
    epoch: AtomicU64,
    derived: RwLock<Option<(u64, [u8; 32])>>,
}

impl Provider {
    pub(crate) fn new(inner: Arc<dyn Auth>, principal_key: [u8; 32]) -> Self {
        Provider {
            stated: inner
                .principal()
                .map(|id| Principal::named(&format!("auth:{id}")).digest),
            inner,
            key: principal_key,
            epoch: AtomicU64::new(0),
            derived: RwLock::new(None),
        }
    }

    /// The principal, when known without asking the provider (the hit path: one read lock).
    pub(crate) fn known(&self) -> Option<[u8; 32]> {
        if self.stated.is_some() {
            return self.stated;
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        match *self.derived.read().unwrap_or_else(|e| e.into_inner()) {
            Some((e, digest)) if e == epoch => Some(digest),
            _ => None,
        }
    }

    /// Derives the principal from what [`Auth::apply`] sets on an empty request: every header it
    /// sets is a credential, hashed (name and value, in a fixed order) with the principal key.
    /// Kept until the next `refresh`; a derivation that overlapped a refresh is not kept. A
    /// dropped derivation leaves nothing behind.
    pub(crate) async fn derive(&self) -> crate::Result<[u8; 32]> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut scratch = HeaderMap::new();
        self.inner.apply(&mut scratch).await?;
        let mut applied: Vec<(&str, &[u8])> = scratch
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        applied.sort_unstable();
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"stitch auth principal v1");
        for (name, value) in applied {
            for part in [name.as_bytes(), value] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        let digest = *h.finalize().as_bytes();
        let mut slot = self.derived.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) == epoch {
            *slot = Some((epoch, digest));
        }
        Ok(digest)
    }
}

impl Auth for Provider {
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()> {
        self.inner.apply(headers)
    }

    fn refresh(&self) -> AuthFuture<'_, ()> {
        Box::pin(async move {
            let outcome = self.inner.refresh().await;
            // Even a failed refresh may have replaced the credentials.
            self.epoch.fetch_add(1, Ordering::AcqRel);
            outcome
        })
    }

    fn principal(&self) -> Option<String> {
        self.inner.principal()
    }
}

pub use stitch_shared::{
    is_credential_header, is_credential_query_key, CREDENTIAL_HEADERS, CREDENTIAL_QUERY_KEYS,
};

/// An explicitly bound principal: a digest of the caller-given identity, and the identity (for
/// strategies holding one credential per principal).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Principal {
    pub(crate) digest: [u8; 32],
    pub(crate) id: Arc<str>,
}

impl Principal {
    /// Plain (unkeyed) hash: identities are not secrets, and a fleet sharing a store must derive the
    /// same digest for the same identity without sharing a key.
    pub(crate) fn named(id: &str) -> Self {
        let mut h = blake3::Hasher::new_derive_key("stitch principal v1");
        h.update(id.as_bytes());
        Principal {
            digest: *h.finalize().as_bytes(),
            id: Arc::from(id),
        }
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Principal({:02x}{:02x}…)",
            self.digest[0], self.digest[1]
        )
    }
}
