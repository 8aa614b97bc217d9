//! Who a call is made as. The principal scopes cache entries (one principal's response is never
//! served to another) and comes from, in order: an explicit binding on the client
//! (`client.as_principal("alice")`), and the credentials the request carries (a keyed hash of
//! their values — never the secret itself). With neither, the call is anonymous.

use http::HeaderMap;
use std::future::Future;
use std::pin::Pin;

/// A boxed future returned by [`Auth`] methods.
pub type AuthFuture<'a, T> = Pin<Box<dyn Future<Output = crate::Result<T>> + Send + 'a>>;

/// Credentials attached by the runtime to every request (`Runtime::builder().auth(...)`).
///
/// The pipeline calls [`Auth::apply`] on every attempt, and after a `401` calls [`Auth::refresh`]
/// once and redoes the attempt (the redo is not counted as a retry).
pub trait Auth: Send + Sync + 'static {
    /// Adds credentials to a request about to be sent.
    fn apply<'a>(&'a self, headers: &'a mut HeaderMap) -> AuthFuture<'a, ()>;

    /// Obtains fresh credentials after the upstream rejected the current ones.
    fn refresh(&self) -> AuthFuture<'_, ()>;

    /// Who the credentials act as (a user or client id, never a secret): cache entries of
    /// principal-scoped stitches are keyed by it.
    fn principal(&self) -> Option<String> {
        None
    }
}

pub use stitch_shared::{
    is_credential_header, is_credential_query_key, CREDENTIAL_HEADERS, CREDENTIAL_QUERY_KEYS,
};

/// An explicitly bound principal: a digest of the caller-given identity.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Principal {
    pub(crate) digest: [u8; 32],
}

impl Principal {
    /// Plain (unkeyed) hash: identities are not secrets, and a fleet sharing a store must derive the
    /// same digest for the same identity without sharing a key.
    pub(crate) fn named(id: &str) -> Self {
        let mut h = blake3::Hasher::new_derive_key("stitch principal v1");
        h.update(id.as_bytes());
        Principal {
            digest: *h.finalize().as_bytes(),
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
