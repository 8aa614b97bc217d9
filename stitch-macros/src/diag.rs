//! Error accumulation: every problem in one item is reported in one compile.
//!
//! Invariant: an `Errors` is always consumed by [`Errors::finish`] (dropping it unfinished panics,
//! as serde_derive's `Ctxt` does, so a lost error fails the tests instead of a user's build
//! silently succeeding); validation code pushes and moves on instead of returning early, so the
//! user sees all of an item's mistakes at once.

use proc_macro2::Span;
use std::fmt::Display;

/// Collected compile errors for one annotated item.
pub(crate) struct Errors {
    errors: Vec<syn::Error>,
    finished: bool,
}

impl Drop for Errors {
    fn drop(&mut self) {
        // Not while unwinding: a second panic would abort and hide the first one.
        if !self.finished && !std::thread::panicking() {
            panic!(
                "stitch-macros bug: {} compile error(s) collected but never emitted",
                self.errors.len()
            );
        }
    }
}

impl Errors {
    pub(crate) fn new() -> Self {
        Errors {
            errors: Vec::new(),
            finished: false,
        }
    }

    /// Records an error pointing at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// Records an error that spans several tokens (e.g. a whole type).
    pub(crate) fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// All errors combined into one, or `Ok` when there were none.
    pub(crate) fn finish(mut self) -> Result<(), syn::Error> {
        self.finished = true;
        let mut iter = std::mem::take(&mut self.errors).into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                for e in iter {
                    first.combine(e);
                }
                Err(first)
            }
        }
    }
}

/// `did you mean` suffix for a misspelt key, or nothing when no candidate is close.
pub(crate) fn did_you_mean<'a>(
    found: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(found, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, c)) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}
