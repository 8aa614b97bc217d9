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
pub use crate::cache::invalidate;
pub use crate::describe::{describe_table, OperationTable};
pub use crate::endpoint::{ArgumentDescription, Endpoint, Method, Operation, Policy, Role};
pub use crate::error::{Error, Result, TimeoutBound, TransportCause};
pub use crate::http::response::Response;
pub use crate::runtime::{Client, Runtime, RuntimeBuilder, DEFAULT_STORE_TIMEOUT, DEFAULT_TIMEOUT};
pub use ::http::{HeaderMap, StatusCode};
pub use bytes::Bytes;
pub use stitch_macros::{seam, stitch, Fingerprint};

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The README's code blocks, compiled (and run, unless `no_run`) by `cargo test --doc`, so the
/// front page never shows syntax that does not build.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
