//! Rules across fields and over the signature: a stitch that would compile but send the wrong
//! request, or none, is refused here. Each rule says why in a comment and has a trybuild case in
//! `ui-tests/tests/ui/`.

use crate::diag::Errors;
use crate::model::{HttpMethod, Output, PoolModel, Role, Stitch, Target};
use syn::{FnArg, GenericParam, LitStr, Signature, Type};

/// Rules on the signature itself.
pub(crate) fn signature(sig: &Signature, is_trait_method: bool, errors: &mut Errors) {
    // The generated body awaits the HTTP call; a blocking fn would have to block a runtime thread.
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            "`#[stitch]` requires an `async fn`: the call is an HTTP request; write `async fn`",
        );
    }
    // One static descriptor serves every call, so the request shape cannot depend on type parameters.
    for param in &sig.generics.params {
        match param {
            // Named lifetimes add nothing: arguments are only borrowed for the call, which elided
            // lifetimes already express.
            GenericParam::Lifetime(l) => errors.spanned(
                l,
                format!(
                    "stitch functions take no lifetime parameters: remove `{}` and elide it in the argument types (`&str` rather than `&{} str`)",
                    l.lifetime, l.lifetime
                ),
            ),
            other => errors.spanned(
                other,
                "stitch functions cannot be generic: the request is described once, at compile time; use concrete types",
            ),
        }
    }
    if let Some(clause) = &sig.generics.where_clause {
        errors.spanned(
            clause,
            "stitch functions cannot have a `where` clause: the request is described once, at compile time; use concrete types and remove the clause",
        );
    }
    // `impl Trait` in argument position is a hidden type parameter (see above).
    for input in &sig.inputs {
        if let FnArg::Typed(pt) = input {
            if let Type::ImplTrait(it) = &*pt.ty {
                errors.spanned(
                    it,
                    "stitch arguments cannot be `impl Trait`: it is a hidden type parameter, and the request is described once for concrete types; use a concrete type such as `String` or `&str`",
                );
            }
        }
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(
            unsafety.span,
            "stitch functions cannot be `unsafe`: remove `unsafe`",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "stitch functions cannot declare an ABI: remove it");
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "stitch functions cannot be variadic");
    }
    let receiver = sig.inputs.iter().find_map(|i| match i {
        FnArg::Receiver(r) => Some(r),
        FnArg::Typed(_) => None,
    });
    match (receiver, is_trait_method) {
        // A client is shared and cloned; consuming it per call would make it single-use.
        (Some(r), true) if r.reference.is_none() => errors.spanned(
            r,
            "stitch methods take `&self`: the client is shared between calls, not consumed; write `&self`",
        ),
        (None, true) => errors.at(
            sig.ident.span(),
            format!(
                "stitch method `{}` needs a `&self` receiver: the generated client carries the runtime; write `async fn {}(&self, ...)`",
                sig.ident, sig.ident
            ),
        ),
        _ => {}
    }
}

/// Rules across the stitch's fields; also gives path placeholders their arguments.
pub(crate) fn stitch(stitch: &mut Stitch, errors: &mut Errors) {
    // Without a target there is no request to send. A `path`/`url` that was written but invalid
    // (or misspelt) is already reported; without a template, which arguments are placeholders is
    // unknown, so argument roles are not judged either.
    let Some(target) = &stitch.target else {
        if !stitch.target_given {
            errors.at(
                stitch.ident.span(),
                format!(
                    "stitch `{}` has no `path` or `url`: add `path = \"/...\"` (joined to the base URL) or `url = \"https://...\"`",
                    stitch.ident
                ),
            );
        }
        return;
    };

    // `url` is complete on its own; a base URL next to it would be silently ignored.
    if let (Target::Url(_, url), Some(base_key)) = (target, stitch.base_url_key) {
        let _ = url;
        errors.at(
            base_key,
            "`base_url` conflicts with `url`: `url` is a complete URL and is never joined to a base URL; use `base_url` + `path`, or `url` alone",
        );
    }

    // Every placeholder must be filled, or the request would go to a literal `{id}`.
    let placeholders: Vec<String> = target
        .template()
        .placeholders()
        .map(str::to_owned)
        .collect();
    for name in &placeholders {
        // `self` is the client, never a value of the request.
        if name == "self" {
            errors.at(
                target.literal().span(),
                "`{self}` cannot be a path placeholder: `self` is the client, not a value; name an argument instead, e.g. `{id}` with an argument `id`",
            );
            continue;
        }
        let found = stitch.arguments.iter_mut().find(|a| a.name() == *name);
        match found {
            None => errors.at(
                target.literal().span(),
                format!(
                    "path placeholder `{{{name}}}` has no matching function argument: add an argument named `{name}` or fix the template"
                ),
            ),
            // One value in two places is almost always a mistake (a renamed query key, a stale template).
            Some(arg) => match &arg.role {
                Some(Role::Path) => {}
                // A path is part of every URL that is logged, shown in errors or stored: a value
                // there cannot be kept secret.
                Some(Role::Query { secret: true, .. } | Role::Header { secret: true, .. }) => {
                    errors.at(
                        arg.role_span.unwrap_or_else(|| arg.ident.span()),
                        format!(
                            "argument `{}` fills the path placeholder `{{{name}}}` and is marked secret: a path value is part of every URL shown in errors and logs; send the secret as `#[header(\"name\", secret)]` or `#[query(\"key\", secret)]` and remove `{{{name}}}` from the path",
                            arg.ident
                        ),
                    );
                }
                Some(other) => errors.at(
                    arg.role_span.unwrap_or_else(|| arg.ident.span()),
                    format!(
                        "argument `{}` has two roles: it fills the path placeholder `{{{name}}}` and is marked {}; rename one of them",
                        arg.ident,
                        other.describe()
                    ),
                ),
                None => arg.role = Some(Role::Path),
            },
        }
    }
    mark_unassigned(stitch, errors, target);

    // Two bodies cannot both be the request body.
    let mut bodies = stitch
        .arguments
        .iter()
        .filter(|a| matches!(a.role, Some(Role::Body { .. })));
    if bodies.next().is_some() {
        for extra in bodies {
            errors.at(
                extra.role_span.unwrap_or_else(|| extra.ident.span()),
                format!(
                    "argument `{}` is a second `#[body]`: a request has one body; wrap the values in one struct",
                    extra.ident
                ),
            );
        }
    }

    for (name, value) in &stitch.headers {
        if let Err(e) = header_name(&name.value()) {
            errors.at(name.span(), e);
        }
        if let Err(e) = header_value(&value.value()) {
            errors.at(value.span(), e);
        }
    }
    requests(stitch, target, errors);
    cache(stitch, errors);
    throttle(stitch, errors);
    resilience(stitch, errors);
}

/// Rules that keep each request part from being sent twice or silently dropped.
fn requests(stitch: &Stitch, target: &Target, errors: &mut Errors) {
    // `pick` walks into a JSON document; a text, bytes or unit output is not decoded as JSON, so
    // the path would be ignored.
    if let (Some(lit), Some(output)) = (&stitch.pick_lit, &stitch.output) {
        let mut inner = output;
        while let Output::WithMeta(o) = inner {
            inner = o;
        }
        let kind = match inner {
            Output::Text(_) => Some("`String` (the body as text)"),
            Output::Bytes(_) => Some("`Bytes` (the raw body)"),
            Output::Unit(_) => Some("`()` (the body is ignored)"),
            _ => None,
        };
        if let Some(kind) = kind {
            errors.at(
                lit.span(),
                format!("`pick` needs a JSON output, but this stitch returns {kind}: `pick` would be ignored; return the picked value's type (e.g. `stitch::Result<Vec<Item>>`) or remove `pick`"),
            );
        }
    }
    // A key in the template and a `#[query]` of the same key would both be sent.
    let static_keys: Vec<String> = target
        .template()
        .static_query
        .iter()
        .flat_map(|q| q.split('&'))
        .map(|pair| pair.split('=').next().unwrap_or_default().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    let mut headers: Vec<(&str, &syn::Ident)> = Vec::new();
    for arg in &stitch.arguments {
        let at = arg.role_span.unwrap_or_else(|| arg.ident.span());
        match &arg.role {
            Some(Role::Query { key, .. }) if static_keys.contains(key) => errors.at(
                at,
                format!(
                    "query key `{key}` of argument `{}` is also fixed in the template `\"{}\"`: both would be sent; remove `{key}=...` from the template or rename the key",
                    arg.ident,
                    target.literal().value()
                ),
            ),
            // Header names are case-insensitive, so two arguments naming one header in different
            // cases would each overwrite the other. (An argument naming a static header is fine:
            // the argument wins, as the README's header precedence says.)
            Some(Role::Header { name, .. }) => {
                match headers.iter().find(|(n, _)| n == name) {
                    Some((_, first)) => errors.at(
                        at,
                        format!(
                            "header `{name}` is already set by argument `{first}` (header names are case-insensitive): one of the two values would be lost; remove one of the arguments"
                        ),
                    ),
                    None => headers.push((name, &arg.ident)),
                }
            }
            _ => {}
        }
    }
}

/// A seam's stitches are told apart by `name` (in metrics, `Endpoint::describe` and the cache's
/// namespace), so two stitches of one seam cannot share one.
pub(crate) fn names(stitches: &[Stitch], errors: &mut Errors) {
    for (i, s) in stitches.iter().enumerate() {
        let Some(lit) = &s.name_lit else { continue };
        // Against every earlier stitch, and against later ones named by default
        // (`Trait::method`): those have no literal to report the clash on.
        if let Some(first) = stitches.iter().enumerate().find_map(|(j, f)| {
            (j != i && f.display_name == s.display_name && (j < i || f.name_lit.is_none()))
                .then_some(f)
        }) {
            errors.at(
                lit.span(),
                format!(
                    "stitch name `\"{}\"` is already used by `{}` in this seam: names identify a stitch's cache, metrics and description; choose another name",
                    s.display_name, first.ident
                ),
            );
        }
    }
}

/// Rules that keep retries from repeating side effects.
fn resilience(stitch: &Stitch, errors: &mut Errors) {
    let idempotent_method = !matches!(stitch.method, HttpMethod::Post | HttpMethod::Patch);
    // A retried write without a key can apply twice: the first attempt may have succeeded and
    // only its response been lost.
    if let (Some(retry), None, false) = (&stitch.retry, &stitch.idempotency, idempotent_method) {
        if retry.attempts > 1 {
            errors.at(
                retry.key,
                format!(
                    "`retry` on a `{}` stitch needs `idempotency`: a retried write without an idempotency key can apply twice; add `idempotency` (or `idempotency(from = \"<argument>\")`)",
                    stitch.method.name()
                ),
            );
        }
    }
    if let Some(idem) = &stitch.idempotency {
        // Safe reads change nothing, so there is nothing to deduplicate; servers may even reject
        // the header on reads.
        if matches!(stitch.method, HttpMethod::Get | HttpMethod::Head) {
            errors.at(
                idem.key,
                format!(
                    "`idempotency` is for writes: a `{}` is already safe to repeat; remove `idempotency`",
                    stitch.method.name()
                ),
            );
        }
        // The idempotency header replaces whatever else would be sent under its name: on a
        // credential header it would overwrite the credential.
        if stitch_shared::is_credential_header(&idem.header) {
            errors.at(
                idem.header_span.unwrap_or(idem.key),
                format!(
                    "`idempotency(header = \"{}\")` names a credential header: the key would replace the credential; use a dedicated header such as `\"idempotency-key\"`",
                    idem.header
                ),
            );
        }
        if let Some(from) = &idem.from {
            let source = stitch.arguments.iter().find(|a| a.name() == from.value());
            if let Some(arg) = source {
                // The key is sent as one header value: a body or a collection has no single
                // text form, so every call would fail.
                let not_scalar = match &arg.role {
                    Some(Role::Body { .. }) => Some("it is the request body".to_owned()),
                    _ => non_scalar(&arg.ty),
                };
                if let Some(why) = not_scalar {
                    errors.at(
                        from.span(),
                        format!(
                            "`idempotency(from = \"{}\")` needs a string or number argument, but {why}: every call would fail; name an argument such as `order_id: &str`, or add one",
                            from.value()
                        ),
                    );
                }
            }
            if source.is_none() {
                let names: Vec<String> = stitch.arguments.iter().map(|a| a.name()).collect();
                let choice = if names.is_empty() {
                    "this stitch has no arguments; remove `from` to send a fresh key per call (kept across its retries)".to_owned()
                } else {
                    format!(
                        "`from` takes the name of the argument whose value identifies the logical call, one of {}{}",
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        crate::diag::did_you_mean(&from.value(), names.iter().map(String::as_str))
                    )
                };
                errors.at(
                    from.span(),
                    format!(
                        "`idempotency(from = \"{}\")` names no argument of this stitch: {choice}",
                        from.value()
                    ),
                );
            }
        }
    }
}

/// Rules that keep a throttle meaning what it says.
fn throttle(stitch: &Stitch, errors: &mut Errors) {
    // A free stitch has no seam whose budget it could share.
    if stitch.seam_name.is_none() {
        if let Some((PoolModel::Seam, span)) = stitch.throttle.as_ref().and_then(|t| t.pool.clone())
        {
            errors.at(
                span,
                "`pool = \"seam\"` needs a seam: this is a free stitch; use `\"stitch\"`, `\"host\"` or a named pool",
            );
        }
    }
    // The seam's throttle is always acquired too, so a looser method throttle would be a promise
    // the stitch cannot keep: the effective limit is the seam's.
    let (Some(method), Some(seam)) = (&stitch.throttle, &stitch.seam_throttle) else {
        return;
    };
    if let (Some(m), Some(s), Some((_, _, span, text)), Some((_, _, _, seam_text))) = (
        method.per_second(),
        seam.per_second(),
        &method.rate,
        &seam.rate,
    ) {
        if m > s {
            errors.at(
                *span,
                format!(
                    "method throttle `\"{text}\"` is looser than the seam's `\"{seam_text}\"`: the seam's throttle applies to every method, so a method's can only tighten it; use a rate of at most `\"{seam_text}\"` or remove it"
                ),
            );
        }
    }
    if let (Some((m, span)), Some((s, _))) = (method.concurrency, seam.concurrency) {
        if m > s {
            errors.at(
                span,
                format!(
                    "method `concurrency = {m}` is looser than the seam's `concurrency = {s}`: a method's throttle can only tighten the seam's; use at most {s}"
                ),
            );
        }
    }
}

fn is_credential(name: &str) -> bool {
    stitch_shared::is_credential_header(name)
}

/// Rules that keep a cache from serving a wrong or someone else's response.
fn cache(stitch: &Stitch, errors: &mut Errors) {
    let Some(cache) = &stitch.cache else { return };
    // A write's response describes one write; replaying it would hide the next write's outcome.
    if !matches!(stitch.method, HttpMethod::Get | HttpMethod::Head) {
        let method = stitch.method.name();
        errors.at(
            cache.key,
            format!(
                "`cache` is not allowed on `{method}` stitches: a write's response must not be reused; remove `cache`, or make the stitch a `get`"
            ),
        );
    }
    // `sensitive` promises the response is never kept; caching it would break that promise.
    if let Some((sensitive, after_cache)) = stitch.sensitive {
        let (later, message) = if after_cache {
            (sensitive, "`sensitive` conflicts with `cache`")
        } else {
            (cache.key, "`cache` conflicts with `sensitive`")
        };
        errors.at(
            later,
            format!(
                "{message}: a sensitive response is never cached or shared; remove one of them"
            ),
        );
    }
    // Credentials differ per principal, so a vary on them would fold secrets into keys for nothing:
    // the default principal scope already separates principals.
    for name in &cache.vary {
        if is_credential(&name.value()) {
            errors.at(
                name.span(),
                format!(
                    "`vary` cannot name the credential header `{}`: credentials never go into cache keys; the default `scope = \"principal\"` already keeps principals apart",
                    name.value()
                ),
            );
        }
    }
    // `same_for_every_principal` acknowledges sharing; without sharing it means nothing.
    if let (Some(ack), None) = (cache.acknowledged, cache.app_scope) {
        errors.at(
            ack,
            "`same_for_every_principal` only applies to `scope = \"app\"`: entries are per principal otherwise; remove it or add `scope = \"app\"`",
        );
    }
    // Sharing the responses of an authenticated request across principals serves one principal's
    // data to another, unless the author states the response is the same for everyone.
    if let (Some(scope), None) = (cache.app_scope, cache.acknowledged) {
        // A secret argument (marked, or a credential key/header name) authenticates too.
        let credential = stitch
            .headers
            .iter()
            .map(|(n, _)| n.value())
            .filter(|n| is_credential(n))
            .map(|n| format!("`{n}`"))
            .chain(stitch.arguments.iter().filter_map(|a| match &a.role {
                Some(Role::Header { name, secret: true }) => Some(format!("`{name}`")),
                Some(Role::Query { key, secret: true }) => {
                    Some(format!("the secret query key `{key}`"))
                }
                _ => None,
            }))
            // A named strategy always adds a credential (`"none"` opts out of auth).
            .chain(
                stitch
                    .auth
                    .iter()
                    .map(LitStr::value)
                    .filter(|name| name != "none")
                    .map(|name| format!("the credentials of auth strategy `{name}`")),
            )
            .next();
        if let Some(credential) = credential {
            errors.at(
                scope,
                format!(
                    "`scope = \"app\"` shares cached responses across principals, but this stitch is authenticated (it sends {credential}): one principal's response could be served to another; remove `scope = \"app\"`, or add `same_for_every_principal` to `cache(...)` if the response is identical for everyone"
                ),
            );
        }
    }
}

// Nothing becomes a query parameter silently: an argument with no role is an error (unless its
// role attribute was malformed, which is already reported).
fn mark_unassigned(stitch: &Stitch, errors: &mut Errors, target: &Target) {
    for arg in stitch
        .arguments
        .iter()
        .filter(|a| a.role.is_none() && a.role_span.is_none())
    {
        let place = format!(
            "it is not a placeholder in `\"{}\"`",
            target.literal().value()
        );
        errors.at(
            arg.ident.span(),
            format!(
                "argument `{}` has no role: {place}; mark it `#[query]`, `#[body]` or `#[header(\"name\")]`, or add `{{{}}}` to the path",
                arg.ident, arg.ident
            ),
        );
    }
}

/// Why a type written as `ty` cannot become one header value, when that is visible in its syntax.
fn non_scalar(ty: &Type) -> Option<String> {
    match ty {
        Type::Reference(r) => non_scalar(&r.elem),
        Type::Paren(p) => non_scalar(&p.elem),
        Type::Tuple(_) => Some("its type is a tuple".into()),
        Type::Array(_) | Type::Slice(_) => Some("its type is a list".into()),
        Type::Path(p) => {
            let last = p.path.segments.last()?.ident.to_string();
            const COLLECTIONS: &[&str] = &[
                "Vec", "VecDeque", "HashMap", "BTreeMap", "HashSet", "BTreeSet", "IndexMap",
            ];
            COLLECTIONS
                .contains(&last.as_str())
                .then(|| format!("its type is a collection (`{last}`)"))
        }
        _ => None,
    }
}

/// A header name must be an HTTP token (RFC 9110 §5.1).
pub(crate) fn header_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`\"{name}\"` is not a valid header name: use letters, digits and `-`, e.g. `\"x-api-version\"`"
        ))
    }
}

/// A static header value must be visible ASCII, spaces or tabs (no line breaks).
fn header_value(value: &str) -> Result<(), String> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "`{value:?}` is not a valid header value: only visible ASCII, spaces and tabs are allowed"
        ))
    }
}
