//! Raw attribute arguments: `key`, `key = literal`, `key(...)`, each with the span of its key and of
//! its value, before any meaning is given to them.
//!
//! Invariant: a key is reported once — unknown keys (with a did-you-mean) and duplicates (at the
//! second key) are found here, so later stages only see known, single keys.

use crate::diag::{did_you_mean, Errors};
use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::{Expr, Ident, Lit, LitStr, Meta, Token};

/// One `key ...` entry of an attribute.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: Value,
}

/// What follows a key.
pub(crate) enum Value {
    /// `key` alone.
    Flag,
    /// `key = <literal>`.
    Lit(Lit),
    /// `key = <expression that is not a literal>`; always an error, kept for its span.
    Expr(Expr),
    /// `key(...)`.
    List(syn::MetaList),
}

impl Value {
    /// A short description of the value's shape for "expected X, found Y" messages.
    fn shape(&self) -> &'static str {
        match self {
            Value::Flag => "a bare key",
            Value::Lit(Lit::Str(_)) => "a string",
            Value::Lit(Lit::Int(_)) => "an integer",
            Value::Lit(Lit::Bool(_)) => "a boolean",
            Value::Lit(_) => "a literal",
            Value::Expr(_) => "an expression",
            Value::List(_) => "a list",
        }
    }

    pub(crate) fn span(&self, key: &Ident) -> Span {
        match self {
            Value::Flag => key.span(),
            Value::Lit(l) => l.span(),
            Value::Expr(e) => syn::spanned::Spanned::span(e),
            Value::List(l) => l.delimiter.span().join(),
        }
    }
}

/// Parsed entries, and whether the list had a syntax error (then the entries are those before it).
pub(crate) struct Raw {
    pub(crate) entries: Vec<Arg>,
    /// A syntax error was reported: "missing key" rules stay silent, since the key may be the part
    /// that did not parse (one error per mistake, no follow-on errors).
    pub(crate) broken: bool,
}

/// Parses `a, b = "x", c(...)` into entries; syntax errors become compile errors. `end` is where an
/// "unexpected end of input" points: the closing delimiter of a nested list, or the last token.
pub(crate) fn parse(tokens: TokenStream, end: Option<Span>, errors: &mut Errors) -> Raw {
    let last = tokens.clone().into_iter().last().map(|t| match t {
        proc_macro2::TokenTree::Group(g) => g.span_close(),
        other => other.span(),
    });
    let parser = |input: syn::parse::ParseStream<'_>| {
        let mut out = Vec::new();
        while !input.is_empty() {
            let meta = match input.parse::<Meta>() {
                Ok(m) => m,
                Err(e) => return Ok((out, Some(e))),
            };
            out.push(meta);
            if input.is_empty() {
                break;
            }
            if let Err(e) = input.parse::<Token![,]>() {
                return Ok((out, Some(e)));
            }
        }
        Ok((out, None))
    };
    let (metas, error) = match parser.parse2(tokens) {
        Ok(parsed) => parsed,
        Err(e) => (Vec::new(), Some(e)),
    };
    let broken = error.is_some();
    if let Some(e) = error {
        // syn places an error at the end of a detached token stream on the whole attribute; the
        // last token (or the list's closing delimiter) is where the user has to type.
        let message = e.to_string();
        match end.or(last) {
            Some(span) if message.starts_with("unexpected end of input") => {
                errors.at(span, message)
            }
            // syn says only "unexpected token"; say what an entry looks like.
            _ => errors.at(
                e.span(),
                format!("{message}: expected `key`, `key = \"value\"` or `key(...)`, separated by commas"),
            ),
        }
    }
    let mut out = Vec::new();
    for meta in metas {
        let path = meta.path();
        let Some(key) = path.get_ident().cloned() else {
            errors.spanned(
                path,
                "expected a plain key such as `path` or `cache`, not a path",
            );
            continue;
        };
        let value = match meta {
            Meta::Path(_) => Value::Flag,
            Meta::NameValue(nv) => match nv.value {
                Expr::Lit(l) => Value::Lit(l.lit),
                other => Value::Expr(other),
            },
            Meta::List(list) => Value::List(list),
        };
        // `5u32` or `"5m"s` would be read as if unsuffixed; a suffix means nothing here.
        if let Value::Lit(lit) = &value {
            if !lit.suffix().is_empty() {
                errors.at(
                    lit.span(),
                    format!(
                        "literal suffix `{}` is not allowed in a stitch attribute: write the value without it",
                        lit.suffix()
                    ),
                );
            }
        }
        out.push(Arg { key, value });
    }
    Raw {
        entries: out,
        broken,
    }
}

/// The entries of a nested `key(...)` list, checked against `known` (e.g. `cache(ttl = "5m")`).
pub(crate) fn nested(
    list: &syn::MetaList,
    known: &[&str],
    what: &str,
    errors: &mut Errors,
) -> Args {
    let raw = parse(
        list.tokens.clone(),
        Some(list.delimiter.span().close()),
        errors,
    );
    Args::new(raw, known, &[], what, errors)
}

/// Typed access to parsed entries, reporting unknown and duplicate keys once.
pub(crate) struct Args {
    entries: Vec<Arg>,
    broken: bool,
}

impl Args {
    /// Keeps the entries whose key is in `known`; reports the rest and any repeated key.
    /// `groups` are sets of keys of which at most one may be given (e.g. the method flags).
    pub(crate) fn new(
        raw: Raw,
        known: &[&str],
        groups: &[&[&str]],
        what: &str,
        errors: &mut Errors,
    ) -> Self {
        let Raw { entries, broken } = raw;
        let mut kept: Vec<Arg> = Vec::new();
        for arg in entries {
            let name = arg.key.to_string();
            if !known.contains(&name.as_str()) {
                // A method key on the trait is not a typo: say where it goes rather than
                // suggest a seam key that merely looks alike (`path` is not `auth`).
                let hint = if what == "seam" && crate::model::STITCH_KEYS.contains(&name.as_str()) {
                    format!("; `{name}` belongs on a method's `#[stitch(...)]`")
                } else {
                    did_you_mean(&name, known.iter().copied())
                };
                errors.at(
                    arg.key.span(),
                    format!("unknown {what} argument `{name}`{hint}"),
                );
                continue;
            }
            if kept.iter().any(|a| a.key == arg.key) {
                errors.at(
                    arg.key.span(),
                    format!("duplicate {what} argument `{name}`: remove one of them"),
                );
                continue;
            }
            let group = groups.iter().find(|g| g.contains(&name.as_str()));
            if let Some(group) = group {
                if let Some(first) = kept
                    .iter()
                    .find(|a| group.contains(&a.key.to_string().as_str()))
                {
                    errors.at(
                        arg.key.span(),
                        format!(
                            "`{name}` conflicts with `{}`: only one of {} may be given",
                            first.key,
                            group
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    continue;
                }
            }
            kept.push(arg);
        }
        Args {
            entries: kept,
            broken,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Arg> {
        self.entries.iter().find(|a| a.key == key)
    }

    /// Where `key` stands among the given keys (for "the later of two conflicting keys").
    pub(crate) fn index(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|a| a.key == key)
    }

    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// `key` is required but absent, and that is not a side effect of a syntax error.
    pub(crate) fn missing(&self, key: &str) -> bool {
        !self.broken && !self.has_key(key)
    }

    /// The list had a syntax error (already reported).
    pub(crate) fn broken(&self) -> bool {
        self.broken
    }

    /// `key` as a flag (no value); `key = true/false` is accepted too.
    pub(crate) fn flag(&self, key: &str, errors: &mut Errors) -> Option<Span> {
        let arg = self.get(key)?;
        match &arg.value {
            Value::Flag => Some(arg.key.span()),
            Value::Lit(Lit::Bool(b)) => b.value.then_some(arg.key.span()),
            other => {
                errors.at(
                    other.span(&arg.key),
                    format!(
                        "`{key}` takes no value: write `{key}`, found {}",
                        other.shape()
                    ),
                );
                None
            }
        }
    }

    /// `key = "string"`.
    pub(crate) fn string(&self, key: &str, example: &str, errors: &mut Errors) -> Option<LitStr> {
        let arg = self.get(key)?;
        expect_str(arg, example, errors)
    }

    /// `key = 123`.
    pub(crate) fn int(&self, key: &str, example: &str, errors: &mut Errors) -> Option<syn::LitInt> {
        let arg = self.get(key)?;
        match &arg.value {
            Value::Lit(Lit::Int(i)) => Some(i.clone()),
            other => {
                errors.at(
                    other.span(&arg.key),
                    format!("expected an integer: `{example}`, found {}", other.shape()),
                );
                None
            }
        }
    }
}

/// The entry's value as a string literal, or an error showing the expected form.
pub(crate) fn expect_str(arg: &Arg, example: &str, errors: &mut Errors) -> Option<LitStr> {
    match &arg.value {
        Value::Lit(Lit::Str(s)) => Some(s.clone()),
        other => {
            errors.at(
                other.span(&arg.key),
                format!(
                    "expected a string literal: `{example}`, found {}",
                    other.shape()
                ),
            );
            None
        }
    }
}

/// `headers("name" = "value", ...)`: pairs of string literals.
pub(crate) fn header_pairs(arg: &Arg, errors: &mut Errors) -> Vec<(LitStr, LitStr)> {
    let Value::List(list) = &arg.value else {
        errors.at(
            arg.value.span(&arg.key),
            format!(
                "expected a list: `headers(\"accept\" = \"application/json\")`, found {}",
                arg.value.shape()
            ),
        );
        return Vec::new();
    };
    let pair = |input: syn::parse::ParseStream<'_>| -> syn::Result<(LitStr, LitStr)> {
        let name: LitStr = input.parse()?;
        input.parse::<Token![=]>()?;
        let value: LitStr = input.parse()?;
        Ok((name, value))
    };
    let parser = |input: syn::parse::ParseStream<'_>| {
        let mut out = Vec::new();
        while !input.is_empty() {
            out.push(pair(input)?);
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(out)
    };
    match parser.parse2(list.tokens.clone()) {
        Ok(pairs) => {
            // Header names are case-insensitive: a second entry of one name would silently
            // replace the first.
            let mut kept: Vec<(LitStr, LitStr)> = Vec::new();
            for (name, value) in pairs {
                if kept
                    .iter()
                    .any(|(n, _)| n.value().eq_ignore_ascii_case(&name.value()))
                {
                    errors.at(
                        name.span(),
                        format!(
                            "header `{}` is given twice in `headers(...)` (header names are case-insensitive): remove one",
                            name.value()
                        ),
                    );
                    continue;
                }
                kept.push((name, value));
            }
            kept
        }
        Err(e) => {
            errors.at(
                e.span(),
                "expected `\"header-name\" = \"value\"` pairs, e.g. `headers(\"accept\" = \"application/json\")`",
            );
            Vec::new()
        }
    }
}
