//! The signature half of the model: each argument's role (`#[query]`, `#[body]`, `#[header]`,
//! path placeholder) and the output decoder chosen from the written return type.

use super::*;
use syn::ext::IdentExt as _;

/// What an argument becomes in the request.
#[derive(Clone)]
pub(crate) enum Role {
    Path,
    /// `secret`: written `#[query(secret)]`, or implied by a well-known credential key.
    Query {
        key: String,
        secret: bool,
    },
    Body {
        form: bool,
    },
    /// `secret`: written `#[header("name", secret)]`, or implied by a credential header name.
    Header {
        name: String,
        secret: bool,
    },
}

impl Role {
    pub(crate) fn describe(&self) -> String {
        match self {
            Role::Path => "a path placeholder".into(),
            Role::Query { .. } => "`#[query]`".into(),
            Role::Body { .. } => "`#[body]`".into(),
            Role::Header { .. } => "`#[header]`".into(),
        }
    }
}

/// One function argument with its role (`None` while roles are still being decided).
pub(crate) struct Argument {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    pub(crate) role: Option<Role>,
    /// The name in the first `#[query]`/`#[body]`/`#[header]` attribute, for spans; also set when
    /// that attribute was malformed (already reported), so the argument is not "without a role".
    pub(crate) role_span: Option<Span>,
}

impl Argument {
    /// The argument's name as the request knows it: `r#type` is `type`.
    pub(crate) fn name(&self) -> String {
        let name = self.ident.to_string();
        match name.strip_prefix("r#") {
            Some(raw) => raw.to_owned(),
            None => name,
        }
    }
}

/// How the response body becomes the output value, chosen from the written return type.
pub(crate) enum Output {
    Json(Type),
    Text(Type),
    Bytes(Type),
    Unit(Type),
    /// `stitch::Response<T>`: status and headers alongside the decoded `T`.
    WithMeta(Box<Output>),
}

impl Output {
    /// The user's type as written (for schemas).
    pub(crate) fn ty(&self) -> &Type {
        match self {
            Output::Json(t) | Output::Text(t) | Output::Bytes(t) | Output::Unit(t) => t,
            Output::WithMeta(inner) => inner.ty(),
        }
    }
}

/// Reads each argument's pattern, type and role attribute (`#[query]`, `#[body]`, `#[header]`).
pub(super) fn arguments(sig: &Signature, errors: &mut Errors) -> Vec<Argument> {
    let mut out = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(pt) = input else { continue };
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
            other => {
                errors.spanned(
                    other,
                    "stitch arguments must be plain names such as `id: u64`: the name is how the argument is placed in the request",
                );
                continue;
            }
        };
        let mut role: Option<Role> = None;
        let mut role_span = None;
        for attr in &pt.attrs {
            let Some(name) = crate::input::ARG_ATTRS
                .iter()
                .find(|n| attr.path().is_ident(n))
            else {
                continue;
            };
            let parsed = arg_role(name, attr, &ident, errors);
            let Some(parsed) = parsed else {
                role_span.get_or_insert(attr.path().span());
                continue;
            };
            if let Some(first) = &role {
                errors.spanned(
                    attr,
                    format!(
                        "argument `{ident}` has two roles: {} and {}; an argument goes in exactly one place",
                        first.describe(),
                        parsed.describe()
                    ),
                );
                continue;
            }
            role = Some(parsed);
            role_span = Some(attr.path().span());
        }
        out.push(Argument {
            ident,
            ty: (*pt.ty).clone(),
            role,
            role_span,
        });
    }
    out
}

fn arg_role(name: &str, attr: &syn::Attribute, ident: &Ident, errors: &mut Errors) -> Option<Role> {
    let ident_name = ident.to_string().trim_start_matches("r#").to_owned();
    let list = match &attr.meta {
        syn::Meta::List(l) => Some(l),
        syn::Meta::Path(_) => None,
        // `#[query = "x"]`: not a form any role attribute takes.
        syn::Meta::NameValue(nv) => {
            errors.spanned(
                nv,
                format!("expected `#[{name}]` or `#[{name}(...)]`, not `#[{name} = ...]`"),
            );
            return None;
        }
    };
    let parts = match list.map(role_parts).transpose() {
        Ok(parts) => parts.unwrap_or_default(),
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    let secret = parts.secret;
    match name {
        "query" => {
            let key = match &parts.name {
                Some(s) if s.value().is_empty() => {
                    errors.at(s.span(), "empty query key: write `#[query]` to use the argument's name, or `#[query(\"key\")]`");
                    return None;
                }
                Some(s) => s.value(),
                None => ident_name,
            };
            if let Some(word) = &parts.word {
                errors.at(word.span(), format!("unknown `#[query]` option `{word}`: expected `#[query]`, `#[query(\"key\")]`, `#[query(secret)]` or `#[query(\"key\", secret)]`"));
                return None;
            }
            // A well-known credential key (`api_key`, `access_token`, ...) is a secret even unmarked:
            // forgetting the marker must not put a key in an error message or a stored record.
            let secret = secret.is_some() || stitch_shared::is_credential_query_key(&key);
            Some(Role::Query { key, secret })
        }
        "body" => {
            // A body is never part of a URL, an error message or a cache key, so there is nothing
            // to redact; a credential belongs in a header.
            if let Some(s) = secret {
                errors.at(s, "`secret` is not allowed on `#[body]`: a request body never appears in URLs, errors or stored records; send a credential as `#[header(\"name\", secret)]` or `#[query(\"key\", secret)]`");
                return None;
            }
            match (&parts.name, &parts.word) {
                (None, None) => Some(Role::Body { form: false }),
                (None, Some(w)) if w == "json" => Some(Role::Body { form: false }),
                (None, Some(w)) if w == "form" => Some(Role::Body { form: true }),
                (Some(s), _) => {
                    errors.at(s.span(), "expected `#[body]` (JSON), `#[body(json)]` or `#[body(form)]`: a body has no name");
                    None
                }
                (None, Some(w)) => {
                    errors.at(w.span(), format!("unknown body format `{w}`: expected `#[body]` (JSON), `#[body(json)]` or `#[body(form)]`"));
                    None
                }
            }
        }
        _ => {
            let Some(lit) = &parts.name else {
                let message = format!(
                    "`#[header]` needs the header's name: `#[header(\"x-{}\")]`",
                    ident_name.replace('_', "-")
                );
                match &parts.word {
                    Some(w) => errors.at(w.span(), message),
                    None => errors.spanned(attr, message),
                }
                return None;
            };
            if let Some(word) = &parts.word {
                errors.at(word.span(), format!("unknown `#[header]` option `{word}`: expected `#[header(\"name\")]` or `#[header(\"name\", secret)]`"));
                return None;
            }
            if let Err(e) = crate::check::header_name(&lit.value()) {
                errors.at(lit.span(), e);
                return None;
            }
            let name = lit.value().to_ascii_lowercase();
            // Credential headers are secrets whether marked or not (see the query key rule).
            let secret = secret.is_some() || stitch_shared::is_credential_header(&name);
            Some(Role::Header { name, secret })
        }
    }
}

/// The inside of `#[query(...)]`, `#[header(...)]`, `#[body(...)]`: an optional name string, an
/// optional bare word (`form`, `json`), and an optional `secret`, in that order.
#[derive(Default)]
struct RoleParts {
    name: Option<LitStr>,
    word: Option<Ident>,
    secret: Option<Span>,
}

fn role_parts(list: &syn::MetaList) -> syn::Result<RoleParts> {
    list.parse_args_with(|input: syn::parse::ParseStream<'_>| {
        let mut parts = RoleParts::default();
        while !input.is_empty() {
            if input.peek(LitStr) && parts.name.is_none() && parts.word.is_none() && parts.secret.is_none() {
                let lit: LitStr = input.parse()?;
                if !lit.suffix().is_empty() {
                    return Err(syn::Error::new(lit.span(), format!("literal suffix `{}` is not allowed here: write the name without it", lit.suffix())));
                }
                parts.name = Some(lit);
            } else if input.peek(Ident::peek_any) {
                let word = Ident::parse_any(input)?;
                if word == "secret" && parts.secret.is_none() {
                    parts.secret = Some(word.span());
                } else if parts.word.is_none() && parts.secret.is_none() && word != "secret" {
                    parts.word = Some(word);
                } else {
                    return Err(syn::Error::new(word.span(), format!("unexpected `{word}`: write the name first, then `secret` once, e.g. `(\"x-api-key\", secret)`")));
                }
            } else {
                return Err(input.error(format!(
                    "expected a name string or `secret`, e.g. `#[{}(\"name\", secret)]`",
                    list.path.get_ident().map(|i| i.to_string()).unwrap_or_default()
                )));
            }
            if input.is_empty() {
                break;
            }
            input.parse::<syn::Token![,]>()?;
        }
        Ok(parts)
    })
}

/// `-> stitch::Result<T>`: picks the decoder from `T`.
pub(super) fn output(sig: &Signature, errors: &mut Errors) -> Option<Output> {
    let ReturnType::Type(_, ty) = &sig.output else {
        errors.at(
            sig.paren_token.span.join(),
            "missing return type: a stitch returns `stitch::Result<T>`; write e.g. `-> stitch::Result<()>` to ignore the response body or `-> stitch::Result<User>` to decode it",
        );
        return None;
    };
    let inner = match &**ty {
        Type::Path(tp) if tp.qself.is_none() => {
            let last = tp.path.segments.last()?;
            match (&last.ident, &last.arguments) {
                (i, PathArguments::AngleBracketed(a)) if i == "Result" => {
                    let mut types = a.args.iter().filter_map(|g| match g {
                        GenericArgument::Type(t) => Some(t),
                        _ => None,
                    });
                    match (types.next(), types.next()) {
                        (Some(t), None) => Some(t.clone()),
                        // Failures are always `stitch::Error` (status, URL, body prefix); a custom
                        // error type could not be produced by the runtime.
                        (Some(t), Some(e)) => {
                            errors.spanned(
                                e,
                                format!(
                                    "the error type of a stitch is always `stitch::Error`: write `-> stitch::Result<{}>` and convert the error at the call site",
                                    type_text(t)
                                ),
                            );
                            return None;
                        }
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        _ => None,
    };
    let Some(inner) = inner else {
        // A bare `Result` (no output type): suggesting `stitch::Result<Result>` would be nonsense.
        if let Type::Path(tp) = &**ty {
            if tp
                .path
                .segments
                .last()
                .is_some_and(|l| l.ident == "Result" && matches!(l.arguments, PathArguments::None))
            {
                errors.spanned(
                    ty,
                    "`stitch::Result` needs the output type: write e.g. `-> stitch::Result<()>` to ignore the response body or `-> stitch::Result<User>` to decode it",
                );
                return None;
            }
        }
        errors.spanned(
            ty,
            format!(
                "a stitch returns `stitch::Result<T>` (a call can fail): write `-> stitch::Result<{}>`",
                type_text(ty)
            ),
        );
        return None;
    };
    Some(classify(inner))
}

/// A type as the user would write it, for suggestions (`Vec<User>`, not `Vec < User >`).
pub(super) fn type_text(ty: &Type) -> String {
    let text = quote::ToTokens::to_token_stream(ty).to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let prev = out.chars().last();
        let glue = c == ' '
            && (matches!(next, Some('<' | '>' | ',' | ':' | ')' | ']'))
                || matches!(prev, Some('<' | ':' | '&' | '(' | '[')));
        if !glue {
            out.push(c);
        }
    }
    out
}

pub(super) fn classify(ty: Type) -> Output {
    match &ty {
        Type::Tuple(t) if t.elems.is_empty() => Output::Unit(ty),
        Type::Path(tp) if tp.qself.is_none() => {
            let Some(last) = tp.path.segments.last() else {
                return Output::Json(ty);
            };
            match (&last.ident, &last.arguments) {
                (i, PathArguments::None) if i == "String" => Output::Text(ty),
                (i, PathArguments::None) if i == "Bytes" => Output::Bytes(ty),
                // Only `stitch::Response` (or `::stitch::Response`) is the wrapper: a bare
                // `Response<T>` may be the user's own type, and a `use` cannot be seen from here.
                (i, PathArguments::AngleBracketed(a))
                    if i == "Response" && a.args.len() == 1 && is_stitch_path(&tp.path) =>
                {
                    match a.args.first() {
                        Some(GenericArgument::Type(inner)) => {
                            Output::WithMeta(Box::new(classify(inner.clone())))
                        }
                        _ => Output::Json(ty),
                    }
                }
                _ => Output::Json(ty),
            }
        }
        _ => Output::Json(ty),
    }
}

/// `stitch::X` or `::stitch::X`: the path names an item of the stitch crate.
fn is_stitch_path(path: &syn::Path) -> bool {
    let n = path.segments.len();
    n == 2 && path.segments[0].ident == "stitch" && path.segments[0].arguments.is_none()
}
