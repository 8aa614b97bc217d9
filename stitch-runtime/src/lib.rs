//! # stitch
//!
//! Declarative, typed HTTP API calls: annotate a trait (or a body-less `async fn`) and stitch
//! generates the client. The configuration is checked by the compiler; every call runs through one
//! runtime pipeline (one connection pool, one place for policies).
//!
//! ```no_run
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize)]
//! struct User { id: u64, name: String }
//!
//! #[stitch::seam(base_url = "https://api.example.com")]
//! trait Acme {
//!     #[stitch(get, path = "/users/{id}", pick = "data")]
//!     async fn user(&self, id: u64) -> stitch::Result<User>;
//! }
//!
//! # async fn run() -> stitch::Result<()> {
//! let runtime = stitch::Runtime::new()?;
//! let acme = AcmeClient::new(&runtime)?;
//! let user = acme.user(7).await?;
//! # Ok(()) }
//! ```
//!
//! See the README for the attribute reference.

// Generated code names `::stitch`; this makes that path work inside this crate's own tests too.
#[allow(unused_extern_crates)]
extern crate self as stitch;

pub mod auth;
pub mod cache;
mod call;
mod describe;
mod endpoint;
mod error;
mod fasthash;
mod http;
mod meter;
pub mod resilience;
mod runtime;
mod schema;
pub mod store;
pub mod throttle;

pub use crate::auth::{is_credential_header, CREDENTIAL_HEADERS};
pub use crate::cache::fingerprint::Fingerprint;
pub use crate::cache::fleet::DEFAULT_FILL_LEASE;
pub use crate::cache::invalidate;
pub use crate::describe::{describe_table, OperationTable};
pub use crate::endpoint::{ArgumentDescription, Endpoint, Method, Operation, Policy, Role};
pub use crate::error::{Error, Result, TimeoutBound, TransportCause};
pub use crate::http::response::Response;
pub use crate::runtime::{Client, Runtime, RuntimeBuilder, DEFAULT_STORE_TIMEOUT, DEFAULT_TIMEOUT};
pub use ::http::{HeaderMap, StatusCode};
pub use bytes::Bytes;
pub use stitch_macros::Fingerprint;

/// On a trait: every method carrying `#[stitch(...)]` becomes a typed HTTP call, implemented by a
/// generated client (`<Trait>Client`, or `client = "Name"`) with one descriptor per method
/// (`AcmeClient::USER`) and `AcmeClient::ENDPOINTS`. The seam's own keys (`base_url`,
/// `headers(...)`, `timeout`, `throttle`, `client`) apply to every method. The full attribute
/// reference, with each key's exact spelling, is in the README.
///
/// ```
/// #[stitch::seam(base_url = "https://api.example.com", headers("accept" = "application/json"))]
/// trait Acme {
///     #[stitch(get, path = "/users/{id}", cache = "5m")]
///     async fn user(&self, id: u64) -> stitch::Result<String>;
///
///     #[stitch(post, path = "/users/{id}/notes", retry = 3, idempotency)]
///     async fn note(&self, id: u64, #[body] text: &str, #[header("x-trace")] trace: &str) -> stitch::Result<()>;
/// }
///
/// # async fn run() -> stitch::Result<()> {
/// let acme = AcmeClient::new(&stitch::Runtime::new()?)?;
/// let name = acme.user(7).await?;
/// acme.note(7, &name, "t-1").await?;
/// # Ok(()) }
/// # fn main() {}
/// ```
pub use stitch_macros::seam;

/// On a body-less `async fn` (or a method of a `#[stitch::seam]` trait): a typed HTTP call. A
/// free stitch needs a complete `url`, runs on the process-wide runtime
/// ([`Runtime::install_global`]) and has a descriptor `<fn>::ENDPOINT`. The full attribute
/// reference, with each key's exact spelling, is in the README.
///
/// ```
/// #[stitch::stitch(get, url = "https://api.example.com/repos/{owner}/{repo}", timeout = "5s")]
/// async fn repo(owner: &str, repo: &str, #[query] verbose: bool) -> stitch::Result<String>;
///
/// # async fn run() -> stitch::Result<()> {
/// let text = repo("rust-lang", "rust", false).await?;
/// # let _ = text;
/// # Ok(()) }
/// # fn main() {
/// // The descriptor, for `describe()` and invalidation.
/// assert_eq!(repo::ENDPOINT.template(), "https://api.example.com/repos/{owner}/{repo}");
/// # }
/// ```
pub use stitch_macros::stitch;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The README's code blocks, compiled (and run, unless `no_run`) by `cargo test --doc`, so the
/// front page never shows syntax that does not build.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
