//! Not public API. What generated code calls; exempt from semver and may change in any release.

pub use crate::__stitch_name as name;
pub use crate::__stitch_schemas as schemas;
pub use crate::cache::fingerprint::{pinned, SelfRef, ShapeHasher};
pub use crate::cache::CachePolicy;
pub use crate::call::{call, call_cached, call_global, call_global_cached};
pub use crate::endpoint::Role::{
    FormBody, Header, JsonBody, Path, Query, SecretHeader, SecretQuery,
};
pub use crate::endpoint::{Endpoint, Method, Role, SchemaSet};

/// `Duration::from_millis`, short for generated code.
pub const fn ms(millis: u64) -> core::time::Duration {
    core::time::Duration::from_millis(millis)
}
pub use crate::http::request::RequestParts;
pub use crate::http::response::{Json, RawBytes, Text, Unit, WithMeta};
pub use crate::resilience::circuit::CircuitPolicy;
pub use crate::resilience::{Backoff, IdempotencyPolicy, RetryPolicy};
pub use crate::runtime::{Client, ClientCore};
pub use crate::schema::{NoSchema, Probe, ViaJsonSchema};
pub use crate::throttle::limiter::{Acquired, Limiters, ThrottlePermit};
pub use crate::throttle::{Pool, ThrottleSpec};

/// The fingerprint of a cached output `T`, spelled so a missing `Fingerprint` impl is reported at
/// the user's type.
pub const fn fp<T: crate::Fingerprint>() -> u64 {
    T::FINGERPRINT
}

/// The cache policy of a stitch whose responses `D` decodes. The only place that requires what
/// the cache needs of a stored value (shared by every hit and every coalesced caller): a missing
/// bound is reported once, at the user's type, and the cached call functions carry no bound that
/// could repeat it (they decode and clone through the policy).
pub const fn cached_as<D: crate::http::response::Decode>(
    ttl: core::time::Duration,
    fingerprint: u64,
) -> CachePolicy
where
    D::Output: Cacheable,
{
    CachePolicy::new(ttl, fingerprint, crate::cache::ValueOps::of::<D>())
}

/// [`cached_as`] for a JSON output `T`, the common case, with its bounds on `T` itself.
pub const fn cached<T: serde::de::DeserializeOwned + Cacheable>(
    ttl: core::time::Duration,
    fingerprint: u64,
) -> CachePolicy {
    cached_as::<Json<T>>(ttl, fingerprint)
}

/// [`cached_as`] for a `Response<T>` output with a JSON `T`, with its bounds on `T` itself.
pub const fn cached_meta<T: serde::de::DeserializeOwned + Cacheable>(
    ttl: core::time::Duration,
    fingerprint: u64,
) -> CachePolicy {
    cached_as::<WithMeta<Json<T>>>(ttl, fingerprint)
}

/// What a cached stitch's output must be.
#[diagnostic::on_unimplemented(
    message = "the output `{Self}` of a cached stitch must be `Clone + Send + Sync + 'static`",
    label = "every cache hit and coalesced caller gets a clone of this value",
    note = "derive `Clone` on it: `#[derive(Clone, serde::Deserialize, stitch::Fingerprint)]`"
)]
pub trait Cacheable: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Cacheable for T {}
