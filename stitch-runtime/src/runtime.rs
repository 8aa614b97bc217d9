//! The shared runtime: one HTTP client (one connection pool), defaults every stitch inherits, and
//! later the store, limiter state and auth. Clients generated from traits hold a cheap clone.
//!
//! Free stitches use the process-wide runtime: [`Runtime::install_global`] once at start-up, or a
//! default runtime is created on first use.

use crate::auth::strategy::Registered;
use crate::auth::{is_credential_header, Auth, AuthContext, Principal, Provider, Strategy};
use crate::cache::coalesce::Flights;
use crate::cache::key::KeyContext;
use crate::cache::local::LocalTier;
use crate::cache::Scope;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::http::request::{Bases, RequestContext};
use crate::http::send::Transport;
use crate::resilience::circuit::{CircuitSeam, Circuits, FleetCircuits};
use crate::resilience::RetryBudgets;
use crate::store::breaker::StoreBreaker;
use crate::store::keys::KeyLayout;
use crate::store::{Store, Verb};
use crate::throttle::limiter::{Limiters, PacingClock};
use crate::throttle::{fleet, ThrottleOutage, Throttles};
use http::header::{HeaderMap, HeaderName};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The shared state behind every stitch call. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Option<&'static str>,
    default_headers: HeaderMap,
    /// A keyed hash of the credentials every request of this runtime carries (default credential
    /// headers, base-URL userinfo), or `None` without any.
    default_credentials: Option<[u8; 32]>,
    timeout: Duration,
    store_timeout: Duration,
    principal_key: [u8; 32],
    store: Option<Arc<dyn Store>>,
    /// Whether the store is asked: one for the cache, the throttles and the circuits, so an
    /// outage costs one store timeout, not one per call and per concern.
    breaker: Arc<StoreBreaker>,
    /// Every key this runtime writes to the store (`key_prefix`).
    layout: KeyLayout,
    local: Arc<LocalTier>,
    /// The fleet cache tier, with a store that has the fleet verbs (`cache/fleet.rs`).
    fleet: Option<Arc<crate::cache::fleet::FleetCache>>,
    flights: Arc<Flights>,
    limiters: Throttles,
    /// The `auth` provider as the pipeline calls it: the same object as `provider`.
    auth: Option<Arc<dyn Auth>>,
    provider: Option<Arc<Provider>>,
    /// Strategies registered by name (`auth_strategy`), for stitches declaring `auth = "name"`.
    strategies: crate::fasthash::FastMap<String, Arc<Registered>>,
    auth_context: AuthContext,
    circuits: CircuitSeam,
    retry_budgets: RetryBudgets,
    /// What `http::send` needs (the client and the response bounds), behind one reference so a
    /// call's future carries no more than it did when `send` took the runtime.
    transport: Transport,
    bases: Bases,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be credentials: only names are shown.
        f.debug_struct("Runtime")
            // A base URL's userinfo is a credential.
            .field(
                "base_url",
                &self.inner.base_url.map(crate::http::redact::text),
            )
            .field(
                "default_headers",
                &self.inner.default_headers.keys().collect::<Vec<_>>(),
            )
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A builder with defaults: a new HTTP client, no base URL override, a total timeout of
    /// [`DEFAULT_TIMEOUT`] for stitches that declare none, store operations bounded by
    /// [`DEFAULT_STORE_TIMEOUT`].
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A runtime with all defaults.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// Makes `self` the runtime free stitches use. Succeeds once per process; later calls (or a
    /// call after a free stitch already created the default runtime) return the runtime back.
    ///
    /// ```
    /// #[stitch::stitch(get, url = "https://status.example.com/health")]
    /// async fn health() -> stitch::Result<String>;
    ///
    /// # fn main() -> stitch::Result<()> {
    /// // At start-up, before the first free stitch is called.
    /// let runtime = stitch::Runtime::builder().build()?;
    /// runtime.install_global().expect("the first runtime installed");
    /// # Ok(()) }
    /// ```
    pub fn install_global(self) -> std::result::Result<(), Runtime> {
        let mut installed = false;
        GLOBAL.get_or_init(|| {
            installed = true;
            ClientCore::unchecked(self.clone())
        });
        if installed {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The HTTP client shared by every stitch of this runtime.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// What this runtime adds to every request (handed to `http`, which does not know the
    /// runtime).
    pub(crate) fn request_context(&self) -> RequestContext<'_> {
        RequestContext {
            base_url: self.inner.base_url,
            default_headers: &self.inner.default_headers,
            bases: &self.inner.bases,
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }
    pub(crate) fn store_timeout(&self) -> Duration {
        self.inner.store_timeout
    }
    /// Whether requests of this runtime carry credentials whatever the stitch: default
    /// credential headers, base-URL userinfo or an `auth` provider.
    pub(crate) fn sends_credentials(&self) -> bool {
        self.inner.default_credentials.is_some() || self.inner.auth.is_some()
    }
    pub(crate) fn principal_key(&self) -> &[u8; 32] {
        &self.inner.principal_key
    }
    /// What this runtime adds to every cache key (handed to the cache, which does not know the
    /// runtime).
    pub(crate) fn key_context(&self) -> KeyContext<'_> {
        let inner = &*self.inner;
        KeyContext {
            principal_key: &inner.principal_key,
            base_url: inner.base_url,
            default_headers: &inner.default_headers,
            default_credentials: inner.default_credentials.as_ref(),
        }
    }
    pub(crate) fn store(&self) -> Option<&Arc<dyn Store>> {
        self.inner.store.as_ref()
    }
    pub(crate) fn store_breaker(&self) -> &Arc<StoreBreaker> {
        &self.inner.breaker
    }
    pub(crate) fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }
    pub(crate) fn local(&self) -> &LocalTier {
        &self.inner.local
    }
    pub(crate) fn fleet(&self) -> Option<&Arc<crate::cache::fleet::FleetCache>> {
        self.inner.fleet.as_ref()
    }
    pub(crate) fn flights(&self) -> &Arc<Flights> {
        &self.inner.flights
    }
    pub(crate) fn limiters(&self) -> &Throttles {
        &self.inner.limiters
    }
    pub(crate) fn provider(&self) -> Option<&Provider> {
        self.inner.provider.as_deref()
    }
    pub(crate) fn auth_context(&self) -> &AuthContext {
        &self.inner.auth_context
    }

    /// How `endpoint` authenticates on this runtime: its declared strategy, none (`"none"`), or
    /// the runtime-wide provider; a declared strategy that is not registered is an error.
    pub(crate) fn credentials_for(&self, endpoint: &Endpoint) -> Result<Credentials<'_>> {
        match endpoint.auth {
            Some("none") => Ok(Credentials::None),
            Some(name) => match self.inner.strategies.get(name) {
                Some(registered) => Ok(Credentials::Strategy(registered)),
                None => Err(Error::Config {
                    stitch: endpoint.name,
                    reason: format!(
                        "the stitch declares `auth = \"{name}\"`, but no strategy of that name is registered: \
                         add `Runtime::builder().auth_strategy(\"{name}\", strategy)`{}",
                        if self.inner.strategies.is_empty() {
                            String::new()
                        } else {
                            let mut names: Vec<&str> =
                                self.inner.strategies.keys().map(String::as_str).collect();
                            names.sort_unstable();
                            format!(" (registered: `{}`)", names.join("`, `"))
                        }
                    ),
                }),
            },
            None => Ok(self
                .inner
                .auth
                .as_ref()
                .map_or(Credentials::None, Credentials::Provider)),
        }
    }
    pub(crate) fn circuits(&self) -> &CircuitSeam {
        &self.inner.circuits
    }
    pub(crate) fn retry_budgets(&self) -> &RetryBudgets {
        &self.inner.retry_budgets
    }
    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// A stitch's circuit state: `"closed"`, `"open"` or `"half-open"`. For a fleet-wide circuit
    /// (a store attached), the state this runtime saw in the store at its last call.
    pub fn circuit_state(&self, endpoint: &Endpoint) -> &'static str {
        self.inner.circuits.state(endpoint)
    }

    /// Throttle pools currently held in memory (idle ones are dropped as new ones are created).
    pub fn throttle_pools(&self) -> usize {
        self.inner.limiters.len()
    }

    /// Gives back what this process holds in the attached store, before it exits: stops renewing
    /// and releases every fleet concurrency lease this runtime holds, so other processes get
    /// those slots at once instead of when the leases' TTL ends. Bounded by the store timeout
    /// (the releases run at once, each retried once). Call it once in-flight calls have ended: a
    /// lease of an attempt still running is released too. Afterwards stitches with fleet
    /// throttles fail with [`Error::ThrottleUnavailable`]; everything else keeps working. Without
    /// a store (or with `local_throttles`) there is nothing to give back. Dropping the last
    /// handle of a runtime does the same in a spawned task when a tokio runtime is there to run
    /// it, which a process exiting right after may never do: await this instead.
    ///
    /// ```
    /// # async fn run() -> stitch::Result<()> {
    /// let runtime = stitch::Runtime::builder()
    ///     .store(stitch::store::MemoryStore::new(10_000))
    ///     .build()?;
    /// // ... serve, then on SIGTERM, once in-flight calls are done:
    /// runtime.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        self.inner.limiters.shutdown().await;
    }

    /// The throttle seam, for benchmarks of the acquire path alone. Not public API.
    #[doc(hidden)]
    pub fn __throttles(&self) -> &Throttles {
        &self.inner.limiters
    }

    /// Forgets every cached entry of one stitch, for every principal (bumps its generation;
    /// nothing is enumerated). This runtime forgets them at once; with a fleet store (one with
    /// the `bump` verb) the generation is bumped in the store behind the call and every runtime
    /// on it drops the stitch's entries when the notification arrives. With a plain store, other
    /// runtimes keep their entries until their `ttl`.
    ///
    /// ```
    /// #[stitch::seam(base_url = "https://api.example.com")]
    /// trait Acme {
    ///     #[stitch(get, path = "/users/{id}", cache = "5m")]
    ///     async fn user(&self, id: u64) -> stitch::Result<String>;
    /// }
    ///
    /// # fn main() -> stitch::Result<()> {
    /// let runtime = stitch::Runtime::new()?;
    /// runtime.invalidate_stitch(AcmeClient::USER); // every `user(..)` entry
    /// assert_eq!(runtime.cached_entries(AcmeClient::USER), 0);
    /// # Ok(()) }
    /// ```
    pub fn invalidate_stitch(&self, endpoint: &Endpoint) {
        let existing = self.inner.local.existing(endpoint);
        if let Some(cache) = &existing {
            cache.bump();
        }
        let (Some(fleet), Some(policy)) = (self.fleet(), &endpoint.cache) else {
            return;
        };
        let digest = crate::cache::key::static_digest(endpoint, policy, self.key_context());
        let scope = crate::cache::local::fleet_scope(&digest);
        let fleet = fleet.clone();
        self.behind(endpoint.name, async move {
            let n = fleet.bump(Some(&scope)).await?;
            if let Some(cache) = existing {
                cache.adopt_fleet_generation(n);
            }
            Ok(())
        });
    }

    /// Forgets every cached entry of every stitch of this runtime — and, with a fleet store,
    /// of every runtime on it (as [`Self::invalidate_stitch`]).
    pub fn invalidate_all(&self) {
        self.inner.local.bump_all();
        let Some(fleet) = self.fleet().cloned() else {
            return;
        };
        let local = self.inner.local.clone();
        self.behind("runtime", async move {
            let n = fleet.bump(None).await?;
            local.adopt_generation(n);
            Ok(())
        });
    }

    /// Sends a bulk invalidation to the fleet behind the caller: this process forgot its entries
    /// already; the others flush theirs when the bump's notification reaches them.
    fn behind(
        &self,
        what: &'static str,
        work: impl std::future::Future<Output = std::result::Result<(), Option<crate::store::StoreError>>>
            + Send
            + 'static,
    ) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                stitch = what,
                "invalidation outside a tokio runtime: not sent to the fleet"
            );
            return;
        };
        handle.spawn(async move {
            if let Err(e) = work.await {
                match e {
                    Some(e) => tracing::warn!(stitch = what, error = %e, "fleet invalidation failed; it holds in this process only"),
                    None => tracing::warn!(stitch = what, "store unavailable; the invalidation holds in this process only"),
                }
                crate::meter::fleet_store_error("bump");
            }
        });
    }

    /// In-process cache entries currently held for a stitch.
    pub fn cached_entries(&self, endpoint: &Endpoint) -> u64 {
        self.inner.local.existing(endpoint).map_or(0, |c| c.len())
    }

    /// Upstream requests currently shared by coalesced callers.
    pub fn requests_in_flight(&self) -> usize {
        self.inner.flights.len()
    }
}

/// Configures a [`Runtime`]. Every setting has a default, so `Runtime::builder().build()` (or
/// [`Runtime::new`]) is a working runtime.
///
/// ```
/// use std::time::Duration;
///
/// # fn main() -> stitch::Result<()> {
/// let runtime = stitch::Runtime::builder()
///     .base_url("https://staging.example.com") // instead of every seam's declared base_url
///     .default_header("x-api-key", "k-123") // a credential: keyed as a hash, never shown
///     .timeout(Duration::from_secs(10)) // for stitches that declare no timeout
///     .store(stitch::store::MemoryStore::new(10_000))
///     .principal_key([7; 32]) // with a store and credentials: the same secret in every process
///     .build()?;
/// # let _ = runtime;
/// # Ok(()) }
/// ```
#[derive(Default)]
#[must_use]
pub struct RuntimeBuilder {
    http: Option<reqwest::Client>,
    base_url: Option<String>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    store_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    /// PEM bundles of extra trusted CA certificates, parsed by `build`.
    root_certificates: Vec<Vec<u8>>,
    error_body_limit: Option<usize>,
    principal_key: Option<[u8; 32]>,
    store: Option<Arc<dyn Store>>,
    auth: Option<Arc<dyn Auth>>,
    strategies: Vec<(String, Box<dyn Strategy>)>,
    max_response_bytes: Option<usize>,
    pacing_clock: PacingClock,
    local_throttles: bool,
    throttle_outage: ThrottleOutage,
    throttle_lease_ttl: Option<Duration>,
    key_prefix: Option<String>,
    local_circuits: bool,
    fill_lease: Option<Duration>,
    /// `seal_key` (current) and `retired_seal_key` calls, in order.
    seal_keys: Vec<(u8, [u8; 32], bool)>,
    plaintext_credentials: bool,
}

impl RuntimeBuilder {
    /// Uses this HTTP client (and its connection pool, TLS and proxy settings) instead of a new one.
    ///
    /// Headers configured inside the client are invisible to stitch: they are in no cache key
    /// and the app-scope refusal cannot see them. Send per-runtime headers with
    /// [`Self::default_header`] and credentials with [`Self::auth`] instead.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Replaces the declared `base_url` of every `path` stitch (e.g. a staging host, or a local
    /// server in tests). `url` stitches are complete URLs and are not affected.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// A header sent on every request; a stitch's own headers and `#[header]` arguments win.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The total timeout of calls whose stitch declares none (default [`DEFAULT_TIMEOUT`], 30 s),
    /// so a silent upstream never holds a call forever. It covers throttle waits, backoff, every
    /// attempt and store reads, like a declared `timeout`. `Duration::MAX` means no bound.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The longest one operation on the shared store may take (default [`DEFAULT_STORE_TIMEOUT`],
    /// 250 ms). A read that takes longer is a miss, a write that takes longer is skipped (both
    /// traced at `warn`); reads also never outlast the call's own total timeout, and cache writes
    /// run after the callers have their value, so a slow store never delays a call by more.
    /// Fleet throttles retry an operation that timed out once, then follow
    /// [`Self::throttle_outage`].
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = Some(timeout);
        self
    }

    /// The TCP connect timeout of the runtime's own HTTP client (ignored with [`Self::http_client`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Trusts the CA certificates of a PEM bundle (one or more `BEGIN CERTIFICATE` blocks) in
    /// addition to the platform's roots: a private CA, or a test server's generated one.
    /// `build` fails with [`Error::Config`] if the bundle does not parse, or if an
    /// [`Self::http_client`] is given too (configure that client's TLS instead).
    ///
    /// ```no_run
    /// # fn main() -> stitch::Result<()> {
    /// let ca = std::fs::read("internal-ca.pem").expect("the CA bundle");
    /// let runtime = stitch::Runtime::builder().root_certificates_pem(ca).build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// How many bytes of an error response's body [`Error::Status`] keeps (default 1024).
    pub fn error_body_limit(mut self, bytes: usize) -> Self {
        self.error_body_limit = Some(bytes);
        self
    }

    /// The key of the keyed hash that turns credentials — default credential headers, base-URL
    /// userinfo, what an `auth` provider applies, secret header and query arguments — into cache
    /// keys. Random per runtime by default; give every process of a fleet the same secret key so
    /// the same credential maps to the same principal and they share entries through a shared
    /// store. Different credentials never map to one principal, whatever the key.
    pub fn principal_key(mut self, key: [u8; 32]) -> Self {
        self.principal_key = Some(key);
        self
    }

    /// Attaches a shared store: cache entries, circuits (see [`Self::local_circuits`]) and
    /// throttle budgets (rate and concurrency) are shared by every runtime attached to the same
    /// store under the same [`Self::key_prefix`], so N processes declaring `"10/s"` send 10/s
    /// together. `build` fails if the store lacks a verb the fleet throttles need
    /// (`reserve`, `lease`, `subscribe`), unless [`Self::local_throttles`] keeps them in-process.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Puts every key this runtime writes to the store — throttle budgets, cache entries,
    /// circuits, the event channel — under `stitch:<prefix>:`, so fleets sharing one store stay
    /// apart: runtimes with different prefixes never share a budget, an entry or a circuit, and
    /// runtimes with the same prefix (and store) always do. Without it every key is under
    /// `stitch:`. Characters that would end a Redis Cluster hash tag or a key segment (`{`, `}`,
    /// `:`, `%`) are escaped, so no prefix can reach another fleet's keys.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = Some(prefix.into());
        self
    }

    /// The fleet cache's fill lease (default [`DEFAULT_FILL_LEASE`](crate::DEFAULT_FILL_LEASE),
    /// 3 s): with a store attached, the one instance fetching a cold entry for the fleet holds
    /// it, renewed every third while the fetch runs; when that instance dies, a waiting one
    /// takes over within it. Shorter: faster takeover, more renewals.
    pub fn fill_lease(mut self, lease: Duration) -> Self {
        self.fill_lease = Some(lease);
        self
    }

    /// Keeps every throttle process-local even with a store attached: each process enforces the
    /// declared budgets alone (N processes send N times the rate). Needed for a store that
    /// implements only `get`/`set`/`delete`.
    pub fn local_throttles(mut self) -> Self {
        self.local_throttles = true;
        self
    }

    /// Keeps every circuit breaker process-local even with a store attached: each runtime counts
    /// its own failures and runs its own half-open trial. By default, with a store that
    /// implements the `circuit` verb (`MemoryStore` and `RedisStore` do), a circuit's failure
    /// count, open state and single half-open trial are shared by every runtime on the store
    /// (under the same `key_prefix`); a store without that verb keeps circuits process-local.
    pub fn local_circuits(mut self) -> Self {
        self.local_circuits = true;
        self
    }

    /// What fleet throttles do when the store is unreachable or does not answer within the
    /// store timeout: fail the attempt with [`Error::ThrottleUnavailable`] (the default,
    /// [`ThrottleOutage::Fail`]), or pace in-process at a share of each declared budget
    /// ([`ThrottleOutage::local`], e.g. `1 / fleet size`). Never unthrottled. After a failure the
    /// store is asked again within half a second, so recovery is automatic.
    pub fn throttle_outage(mut self, policy: ThrottleOutage) -> Self {
        self.throttle_outage = policy;
        self
    }

    /// How long a fleet concurrency lease lives without renewal (default
    /// [`DEFAULT_LEASE_TTL`](crate::throttle::DEFAULT_LEASE_TTL), 10 s). Held leases are renewed
    /// every third of it, so it bounds only how long the slots of a crashed process stay taken.
    pub fn throttle_lease_ttl(mut self, ttl: Duration) -> Self {
        self.throttle_lease_ttl = Some(ttl);
        self
    }

    /// Attaches credentials to every request; after a `401` they are refreshed once and the
    /// attempt redone. The runtime's calls are then never anonymous: principal-scoped entries
    /// are keyed by the identity the provider states ([`Auth::principal`]) or else by a keyed
    /// hash of the credentials it applies, and `scope = "app"` stitches need
    /// `same_for_every_principal`.
    pub fn auth(mut self, auth: impl Auth) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// Registers an auth strategy under `name`, for the stitches declaring `auth = "name"` (on
    /// the seam or the method). `build` fails on a duplicate name or the reserved `"none"`.
    ///
    /// ```
    /// use stitch::auth::{ApiKey, Bearer, Secret};
    ///
    /// # fn main() -> stitch::Result<()> {
    /// let runtime = stitch::Runtime::builder()
    ///     .auth_strategy("acme", Bearer::new(Secret::new("t-1")))
    ///     .auth_strategy("maps", ApiKey::query("key", Secret::new("k-1")))
    ///     .build()?;
    /// # let _ = runtime;
    /// # Ok(()) }
    /// ```
    pub fn auth_strategy(mut self, name: impl Into<String>, strategy: impl Strategy) -> Self {
        self.strategies.push((name.into(), Box::new(strategy)));
        self
    }

    /// The key sealing credentials this runtime writes to its shared store (sessions, OAuth2
    /// tokens), under a one-byte id written in every sealed value: XChaCha20-Poly1305, bound to
    /// the store key (see [`crate::auth::Keyring`]). Every process of a fleet needs the same keys
    /// (and the same `principal_key`). A runtime with a store and a strategy sharing credentials
    /// through it is refused without a seal key or [`Self::store_credentials_in_plaintext`].
    ///
    /// ```
    /// use stitch::auth::{ClientCredentials, Secret};
    ///
    /// # fn main() -> stitch::Result<()> {
    /// let runtime = stitch::Runtime::builder()
    ///     .store(stitch::store::MemoryStore::new(1_000))
    ///     .principal_key([7; 32]) // from your secret manager, the same on every process
    ///     .seal_key(2, [9; 32]) // seals from now on
    ///     .retired_seal_key(1, [8; 32]) // still opens what key 1 sealed (rotation)
    ///     .auth_strategy("acme", ClientCredentials::new("https://idp.example.com/token", "svc", Secret::new("s")))
    ///     .build()?;
    /// # let _ = runtime;
    /// # Ok(()) }
    /// ```
    pub fn seal_key(mut self, id: u8, key: [u8; 32]) -> Self {
        self.seal_keys.push((id, key, true));
        self
    }

    /// A previous seal key: values it sealed still open, nothing new is sealed with it. Keep it
    /// until the values it sealed have expired (a session's TTL, a token's lifetime).
    pub fn retired_seal_key(mut self, id: u8, key: [u8; 32]) -> Self {
        self.seal_keys.push((id, key, false));
        self
    }

    /// Stores shared credentials (session cookies, tokens) in the store **in plaintext**: anyone
    /// who can read the store (a backup, a replica, a `MONITOR`) can act as your accounts. Only
    /// for a store that is itself the trust boundary; prefer [`Self::seal_key`].
    pub fn store_credentials_in_plaintext(mut self) -> Self {
        self.plaintext_credentials = true;
        self
    }

    /// The largest response body accepted (default 64 MiB); a larger one fails the call with
    /// [`Error::BodyTooLarge`] without being read to the end.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = Some(bytes);
        self
    }

    /// The clock throttles pace on: the CPU's time-stamp counter by default (cheapest), or
    /// tokio's clock, so that tests under `tokio::time::pause` see exact pacing timelines.
    ///
    /// ```
    /// # fn main() -> stitch::Result<()> {
    /// // In a `#[tokio::test(start_paused = true)]` test of throttled stitches:
    /// let runtime = stitch::Runtime::builder()
    ///     .pacing_clock(stitch::throttle::PacingClock::Tokio)
    ///     .build()?;
    /// # let _ = runtime;
    /// # Ok(()) }
    /// ```
    pub fn pacing_clock(mut self, clock: PacingClock) -> Self {
        self.pacing_clock = clock;
        self
    }

    /// Builds the runtime; fails with [`Error::Config`] on an invalid base URL or header.
    pub fn build(self) -> Result<Runtime> {
        let config = |reason: String| Error::Config {
            stitch: "runtime",
            reason,
        };
        let base_url = match self.base_url {
            Some(url) => {
                // Shown redacted: a base URL's userinfo is a credential.
                let shown = crate::http::redact::text(&url);
                let parsed = url::Url::parse(&url)
                    .map_err(|e| config(format!("base URL `{shown}` is invalid: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(config(format!("base URL `{shown}` must be http or https")));
                }
                // Paths are joined to the base, queries are each stitch's own: a query or
                // fragment here would be dropped from every request, so it is refused.
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(config(format!(
                        "base URL `{shown}` has a query or fragment, which no request would carry; \
                         put fixed query pairs in each stitch's `path` (`path = \"/a?x=1\"`) or in \
                         a `#[query]` argument"
                    )));
                }
                // Normalized (lower-case host, no default port) so equal bases give equal cache keys.
                // Leaked once per runtime so the hot path joins `&'static str`s without locking or
                // cloning; runtimes are long-lived.
                let normal = parsed.as_str().trim_end_matches('/').to_owned();
                Some(&*Box::leak(normal.into_boxed_str()))
            }
            None => None,
        };
        let principal_key_given = self.principal_key.is_some();
        let principal_key = match self.principal_key {
            Some(k) => k,
            None => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k)
                    .map_err(|e| config(format!("no randomness for the principal key: {e}")))?;
                k
            }
        };
        let mut default_headers = HeaderMap::new();
        for (name, value) in self.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config(format!("`{name}` is not a valid header name")))?;
            let value = crate::http::request::header_value(&value).ok_or_else(|| {
                config(format!(
                    "the value of default header `{name}` is refused: {}",
                    crate::http::request::HEADER_VALUE_RULE
                ))
            })?;
            default_headers.insert(header, value);
        }
        let http = match self.http {
            Some(_) if !self.root_certificates.is_empty() => {
                return Err(config(
                    "`root_certificates_pem` configures the runtime's own HTTP client, but \
                     `http_client` replaces it: add the certificates to that client instead"
                        .into(),
                ));
            }
            Some(client) => client,
            None => {
                // TLS (rustls by default) verifies against the platform's roots; reqwest uses
                // its own crypto provider unless the process installed one, and installs none.
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("stitch/", env!("CARGO_PKG_VERSION")))
                    // Never carry a credential to another origin (see `auth`'s module doc).
                    .redirect(crate::auth::same_origin_redirects());
                if let Some(t) = self.connect_timeout {
                    builder = builder.connect_timeout(t);
                }
                #[cfg(any(feature = "rustls", feature = "native-tls"))]
                for pem in &self.root_certificates {
                    let certificates = reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| config(format!("a root certificate does not parse: {e}")))?;
                    if certificates.is_empty() {
                        return Err(config(
                            "a `root_certificates_pem` bundle holds no certificate".into(),
                        ));
                    }
                    builder = builder.tls_certs_merge(certificates);
                }
                builder
                    .build()
                    .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?
            }
        };
        let store_timeout = self.store_timeout.unwrap_or(DEFAULT_STORE_TIMEOUT);
        let layout = KeyLayout::new(self.key_prefix.as_deref());
        let breaker = Arc::new(StoreBreaker::new(store_timeout));
        let limiters = match &self.store {
            Some(store) if !self.local_throttles => {
                let have = store.capabilities();
                let missing: Vec<String> = fleet::NEEDED
                    .iter()
                    .filter(|v| !have.contains(**v))
                    .map(|v| format!("`{v}`"))
                    .collect();
                if !missing.is_empty() {
                    return Err(config(format!(
                        "the attached store does not implement {}, which fleet-wide throttles need: \
                         implement it in the store's driver (`MemoryStore` and `RedisStore` do), or keep \
                         throttles process-local with `Runtime::builder().local_throttles()`",
                        missing.join(", ")
                    )));
                }
                Throttles::Fleet(fleet::Fleet::with_breaker(
                    store.clone(),
                    breaker.clone(),
                    fleet::Settings {
                        layout: layout.clone(),
                        store_timeout,
                        lease_ttl: self.throttle_lease_ttl.unwrap_or(fleet::DEFAULT_LEASE_TTL),
                        outage: self.throttle_outage,
                        clock: self.pacing_clock,
                    },
                ))
            }
            _ => Throttles::Local(Limiters::new(self.pacing_clock)),
        };
        let circuits = match &self.store {
            Some(store) if !self.local_circuits && store.capabilities().contains(Verb::Circuit) => {
                CircuitSeam::Fleet(FleetCircuits::new(
                    store.clone(),
                    layout.clone(),
                    breaker.clone(),
                    store_timeout,
                ))
            }
            Some(_) if !self.local_circuits => {
                // A first-generation store (get/set/delete) cannot hold a circuit atomically.
                tracing::warn!("the attached store does not implement `circuit`: circuit breakers stay process-local");
                CircuitSeam::Local(Circuits::default())
            }
            _ => CircuitSeam::Local(Circuits::default()),
        };
        let provider = self
            .auth
            .map(|auth| Arc::new(Provider::new(auth, principal_key)));
        let mut strategies = crate::fasthash::FastMap::default();
        for (name, strategy) in self.strategies {
            if name == "none" {
                return Err(config(
                    "`none` is reserved (`auth = \"none\"` opts a stitch out of auth): register the strategy under another name".into(),
                ));
            }
            if strategies.contains_key(&name) {
                return Err(config(format!(
                    "auth strategy `{name}` is registered twice: give each strategy its own name"
                )));
            }
            strategies.insert(name.clone(), Arc::new(Registered::new(name, strategy)));
        }
        let default_credentials =
            default_credentials(&principal_key, &mut default_headers, base_url);
        // Principals across a fleet: with a random key per process, the same credential would
        // be a different principal in every process (entries never shared, and no way to tell).
        if self.store.is_some()
            && !principal_key_given
            && (default_credentials.is_some() || provider.is_some() || !strategies.is_empty())
        {
            return Err(config(
                "a runtime with a shared store and credentials needs `principal_key(..)`: every \
                 process of the fleet must derive the same principal from the same credential, so \
                 give each the same 32-byte secret (for example from an environment variable)"
                    .into(),
            ));
        }
        let local = Arc::new(LocalTier::default());
        let flights: Arc<Flights> = Arc::default();
        let fleet_cache = match &self.store {
            Some(store)
                if store
                    .capabilities()
                    .contains_all(&crate::cache::fleet::VERBS) =>
            {
                let lease = self
                    .fill_lease
                    .unwrap_or(crate::cache::fleet::DEFAULT_FILL_LEASE);
                if lease < Duration::from_millis(3) {
                    return Err(config(format!(
                        "`fill_lease` of {lease:?} is too short to renew: give at least 3 ms (the default is 3 s)"
                    )));
                }
                Some(crate::cache::fleet::FleetCache::new(
                    store.clone(),
                    layout.clone(),
                    breaker.clone(),
                    store_timeout,
                    lease,
                    local.clone(),
                    flights.clone(),
                ))
            }
            _ => None,
        };
        let sealing = sealing(&self.seal_keys, self.plaintext_credentials)?;
        if let Some(shared) = strategies.values().find(|s| s.shares_credentials()) {
            if self.store.is_some() && !sealing.is_set() {
                return Err(config(format!(
                    "auth strategy `{}` shares its credentials through the store, which would hold them in clear: \
                     give every process the same seal key with `Runtime::builder().seal_key(1, key)` (32 bytes \
                     from your secret manager), or accept plaintext with `.store_credentials_in_plaintext()`",
                    shared.name
                )));
            }
        }
        let auth_context = AuthContext::new(
            http.clone(),
            self.store.clone(),
            self.error_body_limit.unwrap_or(1024),
            sealing,
            layout.clone(),
            breaker.clone(),
            store_timeout,
            principal_key,
        );
        let transport = Transport {
            client: http.clone(),
            max_response_bytes: self.max_response_bytes.unwrap_or(64 << 20),
            error_body_limit: self.error_body_limit.unwrap_or(1024),
        };
        Ok(Runtime {
            inner: Arc::new(Inner {
                http,
                base_url,
                default_credentials,
                default_headers,
                principal_key,
                store: self.store,
                breaker,
                layout,
                fleet: fleet_cache,
                local,
                flights,
                limiters,
                auth: provider.clone().map(|p| p as Arc<dyn Auth>),
                provider,
                strategies,
                auth_context,
                circuits,
                retry_budgets: RetryBudgets::default(),
                transport,
                bases: Bases::default(),
                timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                store_timeout,
            }),
        })
    }
}

impl Runtime {
    /// Refuses a stitch sharing its cache across principals (`scope = "app"`) without the
    /// acknowledgement when this runtime attaches credentials the macro could not see: its
    /// entries would otherwise serve one principal's response to another. Checked when a client
    /// is built and again on every cached call (a few loads), so no path — a free stitch on the
    /// process-wide runtime, a client core made by hand — skips it.
    pub(crate) fn check_app_scope(&self, endpoint: &'static Endpoint) -> Result<()> {
        match &endpoint.cache {
            Some(policy)
                if policy.scope == Scope::App
                    && !policy.shared_acknowledged
                    && (self.sends_credentials()
                        || endpoint.auth.is_some_and(|name| name != "none")) =>
            {
                Err(Error::Config {
                    stitch: endpoint.name,
                    reason: "`cache(scope = \"app\")` shares entries across principals, but this stitch is sent with credentials \
                             (an `auth` strategy or provider, a default credential header such as `authorization`, `cookie` or `x-api-key`, or a base URL with userinfo), \
                             so one principal's response could be served to another; \
                             use the default `scope = \"principal\"`, or add `same_for_every_principal` to the stitch's `cache(...)` if the response really is identical for everyone"
                        .into(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// A keyed hash (with the principal key) of the credentials a runtime adds to every request:
/// its default credential headers (marked sensitive on the way) and the userinfo of its base
/// URL, or `None` when it adds none.
fn default_credentials(
    key: &[u8; 32],
    headers: &mut HeaderMap,
    base_url: Option<&str>,
) -> Option<[u8; 32]> {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"stitch runtime credentials v1");
    let mut any = false;
    let field = |h: &mut blake3::Hasher, part: &[u8]| {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    };
    let mut credentials: Vec<_> = headers
        .iter_mut()
        .filter(|(name, _)| is_credential_header(name.as_str()))
        .collect();
    credentials.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for (name, value) in credentials {
        value.set_sensitive(true);
        field(&mut h, name.as_str().as_bytes());
        field(&mut h, value.as_bytes());
        any = true;
    }
    if let Some(base) = base_url.and_then(|b| url::Url::parse(b).ok()) {
        if !base.username().is_empty() || base.password().is_some() {
            field(&mut h, b"userinfo");
            field(&mut h, base.username().as_bytes());
            field(&mut h, base.password().unwrap_or("").as_bytes());
            any = true;
        }
    }
    any.then(|| *h.finalize().as_bytes())
}

/// The builder's seal keys as the runtime keeps them: one current key (the last `seal_key`),
/// retired keys for reading; both keys and the plaintext opt-in is a contradiction.
fn sealing(keys: &[(u8, [u8; 32], bool)], plaintext: bool) -> Result<crate::auth::Sealing> {
    let config = |reason: String| Error::Config {
        stitch: "runtime",
        reason,
    };
    let current: Vec<_> = keys.iter().filter(|(_, _, c)| *c).collect();
    match (current.as_slice(), plaintext) {
        ([], true) if keys.is_empty() => Ok(crate::auth::Sealing::Plaintext),
        (_, true) => Err(config(
            "`store_credentials_in_plaintext()` contradicts the seal keys given: keep one".into(),
        )),
        ([], false) if keys.is_empty() => Ok(crate::auth::Sealing::Unset),
        ([], false) => Err(config(
            "only retired seal keys were given: add the current one with `seal_key(id, key)`".into(),
        )),
        ([(id, key, _)], false) => {
            let mut ring = crate::auth::Keyring::new(*id, *key);
            for (old, key, _) in keys.iter().filter(|(i, _, c)| !*c && i != id) {
                ring = ring.retired(*old, *key);
            }
            Ok(crate::auth::Sealing::Keys(ring))
        }
        (_, false) => Err(config(
            "`seal_key` was given more than once: one key seals, make the others `retired_seal_key`".into(),
        )),
    }
}

/// How a stitch's requests get their credentials on a given runtime.
pub(crate) enum Credentials<'r> {
    None,
    Provider(&'r Arc<dyn Auth>),
    Strategy(&'r Arc<Registered>),
}

impl Credentials<'_> {
    /// Whether a rejected credential can be replaced and the attempt redone (so the call keeps
    /// a copy of its request): a provider's may, a strategy's unless it is fixed.
    pub(crate) fn refreshes(&self) -> bool {
        match self {
            Credentials::None => false,
            Credentials::Provider(_) => true,
            Credentials::Strategy(strategy) => strategy.refreshes(),
        }
    }
}

/// The total timeout of a call whose stitch declares none and whose runtime sets none
/// ([`RuntimeBuilder::timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one shared-store operation may take unless [`RuntimeBuilder::store_timeout`] says
/// otherwise: a store on the same network answers in milliseconds; one that does not is treated
/// as down for that operation.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(250);

static GLOBAL: OnceLock<ClientCore> = OnceLock::new();

/// What a generated client holds: the runtime and the principal it is bound to.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct ClientCore {
    runtime: Runtime,
    principal: Option<Principal>,
}

#[doc(hidden)]
impl ClientCore {
    /// Checks the client's stitches against the runtime and binds them to it.
    ///
    /// A stitch sharing its cache across principals (`scope = "app"`) without the acknowledgement
    /// is refused when the runtime attaches credentials the macro could not see: its entries would
    /// otherwise serve one principal's response to another.
    pub fn new(runtime: &Runtime, endpoints: &'static [&'static Endpoint]) -> Result<Self> {
        for endpoint in endpoints {
            runtime.check_app_scope(endpoint)?;
            runtime.credentials_for(endpoint)?;
        }
        Ok(Self::unchecked(runtime.clone()))
    }

    fn unchecked(runtime: Runtime) -> Self {
        ClientCore {
            runtime,
            principal: None,
        }
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    pub fn with_principal(&self, id: Option<&str>) -> Self {
        ClientCore {
            runtime: self.runtime.clone(),
            principal: id.map(Principal::named),
        }
    }
}

/// Operations every generated client has. Bring it into scope with `use stitch::Client;`.
///
/// ```no_run
/// use stitch::Client;
///
/// #[stitch::seam(base_url = "https://api.example.com")]
/// trait Acme {
///     #[stitch(get, path = "/me", cache = "1m")]
///     async fn me(&self) -> stitch::Result<String>;
/// }
///
/// # async fn run(runtime: stitch::Runtime) -> stitch::Result<()> {
/// let acme = AcmeClient::new(&runtime)?;
/// // Calls made for alice: her cached entries are never served to anyone else.
/// let alice = acme.as_principal("alice");
/// println!("{}", alice.me().await?);
/// // Forget every cached entry of `Acme`'s stitches, for every principal.
/// acme.invalidate_all();
/// # Ok(()) }
/// # fn main() {}
/// ```
pub trait Client: Clone + Sized {
    /// The client's stitches.
    const STITCHES: &'static [&'static Endpoint];

    #[doc(hidden)]
    fn __core(&self) -> &ClientCore;
    #[doc(hidden)]
    fn __with_core(&self, core: ClientCore) -> Self;

    /// The runtime this client runs on.
    fn runtime(&self) -> &Runtime {
        self.__core().runtime()
    }

    /// A clone of this client whose calls are made as `principal`: cached entries are scoped to it,
    /// so one principal's response is never served to another.
    fn as_principal(&self, principal: &str) -> Self {
        self.__with_core(self.__core().with_principal(Some(principal)))
    }

    /// A clone of this client with no bound principal.
    fn anonymous(&self) -> Self {
        self.__with_core(self.__core().with_principal(None))
    }

    /// Forgets every cached entry of this client's stitches, for every principal.
    fn invalidate_all(&self) {
        for endpoint in Self::STITCHES {
            self.runtime().invalidate_stitch(endpoint);
        }
    }
}

/// The process-wide client of free stitches.
pub(crate) fn global() -> Result<&'static ClientCore> {
    if let Some(core) = GLOBAL.get() {
        return Ok(core);
    }
    let runtime = Runtime::new()?;
    Ok(GLOBAL.get_or_init(|| ClientCore::unchecked(runtime)))
}
