//! Read-through caching and request coalescing.
//!
//! A cached stitch's call looks up a derived key (`key.rs`) in the in-process tier of decoded values
//! (`local.rs`), then in the attached shared store if any ([`crate::store`], holding the responses
//! as records of `record.rs`), and on a miss joins or leads one in-flight upstream request
//! (`coalesce.rs`). Only 2xx responses that decoded are stored.
//!
//! Invariants: keys are principal-scoped unless the stitch opted into `scope = "app"`; credentials
//! are folded in as a keyed hash and never appear in a key; invalidation bumps generations, so
//! nothing ever enumerates keys.

pub(crate) mod coalesce;
pub mod fingerprint;
pub(crate) mod fleet;
pub(crate) mod key;
pub(crate) mod local;
pub(crate) mod record;

use crate::cache::local::Value;
use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::http::response::{Decode, Json, RawBytes, RawResponse, Text, Unit, WithMeta};
use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Whose entries a cached stitch may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// Entries are keyed by the principal a call is made as (the default).
    Principal,
    /// Entries are shared across principals: only for responses identical for everyone.
    App,
}

/// A stitch's cache declaration, as parsed at compile time.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub(crate) ttl: Duration,
    pub(crate) scope: Scope,
    pub(crate) vary: &'static [&'static str],
    pub(crate) max_entries: u64,
    pub(crate) coalesce: bool,
    pub(crate) fingerprint: u64,
    pub(crate) shared_acknowledged: bool,
    pub(crate) values: ValueOps,
}

impl CachePolicy {
    /// Built by `__private::cached`, the one place that requires the output to be cacheable.
    pub(crate) const fn new(ttl: Duration, fingerprint: u64, values: ValueOps) -> Self {
        CachePolicy {
            ttl,
            scope: Scope::Principal,
            vary: &[],
            max_entries: 10_000,
            coalesce: true,
            fingerprint,
            shared_acknowledged: false,
            values,
        }
    }
}

#[doc(hidden)]
impl CachePolicy {
    pub const fn app_scope(mut self, acknowledged: bool) -> Self {
        self.scope = Scope::App;
        self.shared_acknowledged = acknowledged;
        self
    }
    pub const fn with_vary(mut self, headers: &'static [&'static str]) -> Self {
        self.vary = headers;
        self
    }
    pub const fn with_max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }
    pub const fn no_coalesce(mut self) -> Self {
        self.coalesce = false;
        self
    }
}

impl CachePolicy {
    /// Time to live of an entry.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
    /// Whose entries may be served.
    pub fn scope(&self) -> Scope {
        self.scope
    }
    /// Request headers folded into the key.
    pub fn vary(&self) -> &'static [&'static str] {
        self.vary
    }
    /// Bound on in-process entries of this stitch.
    pub fn max_entries(&self) -> u64 {
        self.max_entries
    }
    /// Whether concurrent identical calls share one upstream request.
    pub fn coalesces(&self) -> bool {
        self.coalesce
    }
    /// The output type's schema fingerprint (or the pinned version's).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// How the call pipeline decodes one stitch's output into the type-erased cache entry and clones
/// it back out: monomorphized for the stitch's decoder where its descriptor is built
/// (`__private::cached`), so everything the cache needs of the output (decodable, `Clone`, `Send`,
/// `Sync`) is required there, once, and the call functions carry no bound that could report the
/// same problem again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueOps {
    decode: fn(&'static Endpoint, RawResponse) -> Result<Value>,
    /// Writes a clone of the entry into `out` (a `&mut Option<T>`); leaves it `None` if the
    /// entry or `out` is of another type.
    clone_into: fn(&(dyn Any + Send + Sync), &mut dyn Any),
}

impl ValueOps {
    pub(crate) const fn of<D: Decode>() -> Self
    where
        D::Output: Clone + Sync,
    {
        ValueOps {
            decode: decode::<D>,
            clone_into: clone_into::<D::Output>,
        }
    }

    /// Decodes a response into a cache entry.
    pub(crate) fn decode(&self, endpoint: &'static Endpoint, raw: RawResponse) -> Result<Value> {
        (self.decode)(endpoint, raw)
    }

    /// A clone of the cached `value` as `T`; `None` if it holds another type. No allocation.
    pub(crate) fn typed<T: 'static>(&self, value: &Value) -> Option<T> {
        let mut out = None::<T>;
        (self.clone_into)(&**value, &mut out);
        out
    }
}

fn decode<D: Decode>(endpoint: &'static Endpoint, raw: RawResponse) -> Result<Value>
where
    D::Output: Sync,
{
    Ok(Arc::new(D::decode(endpoint, raw)?))
}

fn clone_into<T: Clone + 'static>(value: &(dyn Any + Send + Sync), out: &mut dyn Any) {
    if let (Some(value), Some(out)) = (value.downcast_ref::<T>(), out.downcast_mut::<Option<T>>()) {
        *out = Some(value.clone());
    }
}

/// What a decoder returns, without the bounds decoding needs: the cached call functions name their
/// output through it, so an output that cannot be decoded or cached is reported only where the
/// descriptor's policy is built.
#[doc(hidden)]
pub trait Decoded: 'static {
    type Output: 'static;
}

impl<T: 'static> Decoded for Json<T> {
    type Output = T;
}
impl Decoded for Text {
    type Output = String;
}
impl Decoded for RawBytes {
    type Output = bytes::Bytes;
}
impl Decoded for Unit {
    type Output = ();
}
impl<D: Decoded> Decoded for WithMeta<D> {
    type Output = crate::Response<D::Output>;
}

tokio::task_local! {
    /// Set by [`invalidate`]: the stitch call inside removes its entry instead of running.
    pub(crate) static INVALIDATING: std::cell::Cell<bool>;
}

/// Removes the one cache entry a call would use, without making the call:
/// `stitch::invalidate(acme.user(7)).await` forgets `user(7)` for the principal `acme` is bound to.
///
/// Returns whether an entry existed, in this process or in the attached shared store (both are
/// deleted). A call of an uncached stitch does nothing and returns `false`; nothing is ever sent.
///
/// ```
/// #[stitch::seam(base_url = "https://api.example.com")]
/// trait Acme {
///     #[stitch(get, path = "/users/{id}", cache = "5m")]
///     async fn user(&self, id: u64) -> stitch::Result<String>;
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> stitch::Result<()> {
/// let acme = AcmeClient::new(&stitch::Runtime::new()?)?;
/// // After user 7 changed upstream: forget the cached copy, without a request.
/// let existed = stitch::invalidate(acme.user(7)).await;
/// assert!(!existed, "nothing was cached yet");
/// # Ok(()) }
/// ```
pub async fn invalidate<T>(call: impl Future<Output = Result<T>>) -> bool {
    INVALIDATING
        .scope(std::cell::Cell::new(false), async move {
            let _ = call.await;
            INVALIDATING.with(|removed| removed.get())
        })
        .await
}

/// Whether the current task runs inside [`invalidate`].
pub(crate) fn invalidating() -> bool {
    INVALIDATING.try_with(|_| ()).is_ok()
}

pub(crate) fn mark_invalidated(existed: bool) {
    let _ = INVALIDATING.try_with(|removed| removed.set(removed.get() | existed));
}
