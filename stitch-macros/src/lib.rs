//! Procedural macros of [`stitch`](https://docs.rs/stitch-runtime): `#[stitch(...)]` and
//! `#[seam(...)]`. Depend on `stitch-runtime`, which re-exports them; this crate is an
//! implementation detail and its expansions call the runtime's `__private` module.
//!
//! The pipeline (private modules): `args` (raw keys with spans) → `model` (meaning, roles) →
//! `check` (cross-field and signature rules) → `expand` (tokens). Errors are accumulated, so one
//! compile reports every problem of an item.

mod args;
mod check;
mod diag;
mod expand;
mod fingerprint;
mod input;
mod model;
mod spec;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod snapshot;

use proc_macro::TokenStream;

/// Turns a body-less `async fn` into a typed HTTP call; the attribute reference is in the README
/// of `stitch-runtime`.
#[proc_macro_attribute]
pub fn stitch(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::stitch(args.into(), item.into()).into()
}

/// Turns a trait whose methods carry `#[stitch(...)]` into a generated `<Trait>Client`.
#[proc_macro_attribute]
pub fn seam(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::seam(args.into(), item.into()).into()
}

/// Derives `stitch::Fingerprint`: a compile-time hash of the type's serde-visible shape, folded into
/// cache keys so a changed output type never reads entries written for its old shape.
/// `#[fingerprint(version = "1")]` pins a type by hand (to cut a cycle of mutually recursive types).
#[proc_macro_derive(Fingerprint, attributes(fingerprint))]
pub fn derive_fingerprint(input: TokenStream) -> TokenStream {
    fingerprint::derive(input.into()).into()
}
