//! A store's failure: what kind, which operation, and the driver's own error as its source.

use super::Verb;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// What kind of failure a [`StoreError`] is; the outage policies branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// No answer within the operation's timeout. A mutating verb's outcome is unknown: retry it
    /// once with the same [`OpId`](super::OpId).
    Timeout,
    /// The store cannot be reached (refused, reset, dropped connection).
    Unavailable,
    /// The driver does not implement the verb.
    Unsupported,
    /// The store answered something unexpected (wrong type, script error, malformed reply).
    Protocol,
}

/// A store's failure (connection refused, timeout, protocol error, unsupported verb). The driver's
/// error, when there is one, is kept as [`source`](std::error::Error::source).
#[derive(Debug, Clone)]
pub struct StoreError {
    /// Which operation failed (`get`, `set`, `reserve`, ...).
    pub operation: &'static str,
    /// What the driver reported, or what stitch found wrong.
    pub message: String,
    /// What kind of failure.
    pub kind: StoreErrorKind,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// A failure of `operation`.
    pub fn new(operation: &'static str, kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            operation,
            message: message.into(),
            kind,
            source: None,
        }
    }

    /// `operation` got no answer within `limit`.
    pub fn timeout(operation: &'static str, limit: Duration) -> Self {
        Self::new(
            operation,
            StoreErrorKind::Timeout,
            format!("no answer within {limit:?}"),
        )
    }

    /// The store cannot be reached.
    pub fn unavailable(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(operation, StoreErrorKind::Unavailable, message)
    }

    /// The store answered something unexpected.
    pub fn protocol(operation: &'static str, message: impl Into<String>) -> Self {
        Self::new(operation, StoreErrorKind::Protocol, message)
    }

    /// The driver does not implement `verb`.
    pub fn unsupported(verb: Verb) -> Self {
        Self::new(
            verb.name(),
            StoreErrorKind::Unsupported,
            format!("this store does not implement `{verb}`"),
        )
    }

    /// The same error, with the driver's error as its source.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store {} failed: {}", self.operation, self.message)
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Fails with an error naming the first verb of `needed` that `have` lacks, and the fix.
pub(super) fn require(have: super::Verbs, needed: &[Verb]) -> Result<(), StoreError> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|v| !have.contains(**v))
        .map(|v| v.name())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(StoreError::new(
        "require",
        StoreErrorKind::Unsupported,
        format!(
            "the attached store does not implement {list}, which this runtime's fleet-wide \
             state needs: use a driver that implements it (`MemoryStore`, `RedisStore`), or \
             declare that state process-local"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, OpId, Store, StoreFuture};
    use bytes::Bytes;

    /// A third-party driver of the first generation: get/set/delete only.
    struct Basic(MemoryStore);

    impl Store for Basic {
        fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
            self.0.get(key)
        }
        fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
            self.0.set(key, value, ttl)
        }
        fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
            self.0.delete(key)
        }
    }

    #[tokio::test]
    async fn a_basic_driver_refuses_what_it_lacks_and_require_names_it() {
        let s = Basic(MemoryStore::default());
        let err = s
            .increment("k", 1, Duration::from_secs(1), OpId::random())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unsupported);
        assert_eq!(
            err.to_string(),
            "store increment failed: this store does not implement `increment`"
        );
        assert!(s.require(&[Verb::Get, Verb::Delete]).is_ok());
        let err = s
            .require(&[Verb::Get, Verb::Reserve, Verb::Lease])
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unsupported);
        assert_eq!(
            err.to_string(),
            "store require failed: the attached store does not implement `reserve`, `lease`, \
             which this runtime's fleet-wide state needs: use a driver that implements it \
             (`MemoryStore`, `RedisStore`), or declare that state process-local"
        );
        crate::store::conformance::run(|| Basic(MemoryStore::default())).await;
    }

    #[test]
    fn the_source_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StoreError::unavailable("get", "cannot connect").with_source(io);
        assert_eq!(e.source().unwrap().to_string(), "refused");
        assert!(StoreError::timeout("get", Duration::from_millis(5))
            .source()
            .is_none());
    }
}
