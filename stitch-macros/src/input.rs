//! What was annotated: a free `async fn` without a body, a trait with stitched methods, or (an error)
//! a lone trait method. Also strips the inert attributes stitch reads (`#[stitch]` on trait methods,
//! `#[query]`/`#[body]`/`#[header]` on arguments) so the emitted item is plain Rust.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, FnArg, Signature, Token, Visibility};

/// A function signature with its attributes, visibility and whether it had a body.
pub(crate) struct FnItem {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) body: Option<syn::Block>,
}

impl Parse for FnItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let body = if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
            None
        } else {
            Some(input.parse()?)
        };
        Ok(FnItem {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

/// The item under `#[stitch(...)]`.
pub(crate) enum StitchTarget {
    Fn(FnItem),
    Trait(syn::ItemTrait),
    Other(TokenStream),
}

pub(crate) fn parse_stitch_target(item: TokenStream) -> StitchTarget {
    if let Ok(t) = syn::parse2::<syn::ItemTrait>(item.clone()) {
        return StitchTarget::Trait(t);
    }
    match syn::parse2::<FnItem>(item.clone()) {
        Ok(f) => StitchTarget::Fn(f),
        Err(_) => StitchTarget::Other(item),
    }
}

/// Names of the argument attributes stitch consumes.
pub(crate) const ARG_ATTRS: &[&str] = &["query", "body", "header"];

/// Removes stitch's argument attributes from a signature (they are not real attributes).
pub(crate) fn strip_arg_attrs(sig: &mut Signature) {
    for input in &mut sig.inputs {
        if let FnArg::Typed(pt) = input {
            pt.attrs
                .retain(|a| !ARG_ATTRS.iter().any(|name| a.path().is_ident(name)));
        }
    }
}

/// Whether an attribute is `#[stitch(...)]` or `#[stitch::stitch(...)]`.
pub(crate) fn is_stitch_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "stitch")
}
