//! `cache = "5m"` and `cache(...)`: ttl, scope, vary, bounds and coalescing.

use super::*;

/// Keys accepted inside `cache(...)`.
pub(crate) const CACHE_KEYS: &[&str] = &[
    "ttl",
    "scope",
    "vary",
    "max_entries",
    "coalesce",
    "version",
    "same_for_every_principal",
];

/// A stitch's `cache = "..."` or `cache(...)`.
pub(crate) struct CacheModel {
    /// The `cache` key, for errors about caching itself.
    pub(crate) key: Span,
    pub(crate) ttl: Duration,
    /// `scope = "app"`, with the span of its value.
    pub(crate) app_scope: Option<Span>,
    /// `same_for_every_principal`, with its span.
    pub(crate) acknowledged: Option<Span>,
    pub(crate) vary: Vec<LitStr>,
    pub(crate) max_entries: Option<u64>,
    pub(crate) coalesce: bool,
    pub(crate) version: Option<String>,
}

/// `cache = "5m"` or `cache(ttl = "5m", scope = "app", vary = ["accept-language"], ...)`.
pub(super) fn cache(args: &Args, errors: &mut Errors) -> Option<CacheModel> {
    let arg = args.get("cache")?;
    let key = arg.key.span();
    let ttl_of = |lit: &LitStr, errors: &mut Errors| duration_of(lit, "cache `ttl`", errors);
    match &arg.value {
        args::Value::Lit(syn::Lit::Str(lit)) => Some(CacheModel {
            key,
            ttl: ttl_of(lit, errors)?,
            app_scope: None,
            acknowledged: None,
            vary: Vec::new(),
            max_entries: None,
            coalesce: true,
            version: None,
        }),
        args::Value::List(list) => {
            let inner = args::nested(list, CACHE_KEYS, "cache", errors);
            let ttl = match inner.string("ttl", "ttl = \"5m\"", errors) {
                Some(lit) => ttl_of(&lit, errors),
                None => {
                    if inner.missing("ttl") {
                        errors.at(
                            list.delimiter.span().join(),
                            "`cache(...)` needs a `ttl`: e.g. `cache(ttl = \"5m\")`",
                        );
                    }
                    None
                }
            };
            let app_scope = match inner.string("scope", "scope = \"app\"", errors) {
                Some(lit) if lit.value() == "app" => Some(lit.span()),
                Some(lit) if lit.value() == "principal" => None,
                Some(lit) => {
                    errors.at(
                        lit.span(),
                        format!(
                            "unknown cache scope `\"{}\"`: expected `\"principal\"` (the default: entries are never shared between principals) or `\"app\"` (shared by everyone)",
                            lit.value()
                        ),
                    );
                    None
                }
                None => None,
            };
            let vary = inner
                .get("vary")
                .map(|a| vary(a, errors))
                .unwrap_or_default();
            let max_entries = inner
                .int("max_entries", "max_entries = 500", errors)
                .and_then(|lit| match lit.base10_parse::<u64>() {
                    Ok(0) => {
                        errors.at(lit.span(), "`max_entries` must be at least 1: a cache that holds nothing caches nothing; remove `cache` instead");
                        None
                    }
                    Ok(n) => Some(n),
                    Err(_) => {
                        errors.at(lit.span(), "`max_entries` must be a positive integer that fits in 64 bits");
                        None
                    }
                });
            let coalesce = match inner.get("coalesce") {
                Some(a) => match &a.value {
                    args::Value::Lit(syn::Lit::Bool(b)) => b.value,
                    other => {
                        errors.at(
                            other.span(&a.key),
                            "expected `coalesce = true` or `coalesce = false`",
                        );
                        true
                    }
                },
                None => true,
            };
            let version = inner
                .string("version", "version = \"2\"", errors)
                .map(|l| l.value());
            let acknowledged = inner.flag("same_for_every_principal", errors);
            Some(CacheModel {
                key,
                ttl: ttl?,
                app_scope,
                acknowledged,
                vary,
                max_entries,
                coalesce,
                version,
            })
        }
        other => {
            errors.at(
                other.span(&arg.key),
                "expected `cache = \"<ttl>\"` (e.g. `cache = \"5m\"`) or `cache(ttl = \"5m\", ...)`",
            );
            None
        }
    }
}

/// `vary = ["accept-language", ...]`: request header names folded into the cache key.
pub(super) fn vary(arg: &args::Arg, errors: &mut Errors) -> Vec<LitStr> {
    // A single name may be written without the brackets.
    if let args::Value::Lit(syn::Lit::Str(s)) = &arg.value {
        return vec![s.clone()];
    }
    let items = list_items(
        arg,
        "expected a list of header names: `vary = [\"accept-language\"]`",
        errors,
    );
    let mut out = Vec::new();
    for item in items {
        match item {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => {
                if let Err(e) = crate::check::header_name(&s.value()) {
                    errors.at(s.span(), e);
                } else {
                    out.push(s.clone());
                }
            }
            other => errors.spanned(
                other,
                "expected a header name string such as `\"accept-language\"`",
            ),
        }
    }
    out
}
