//! The validated model of a stitch: attribute values given meaning (methods, parsed templates and
//! durations) and every argument given exactly one role. Built from raw [`crate::args`], with all
//! problems pushed to [`Errors`] rather than returned, so one compile shows them all.

use crate::args::{self, Args};
use crate::diag::Errors;
use crate::spec::{self, Template};
use proc_macro2::Span;
use std::time::Duration;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, LitStr, Pat, PathArguments, ReturnType, Signature, Type};

mod cache;
mod resilience;
mod signature;
mod throttle;

pub(crate) use cache::*;
pub(crate) use resilience::*;
pub(crate) use signature::*;
pub(crate) use throttle::*;

/// Keys accepted by `#[stitch(...)]` on a function or trait method.
pub(crate) const STITCH_KEYS: &[&str] = &[
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "head",
    "method",
    "path",
    "url",
    "base_url",
    "headers",
    "pick",
    "timeout",
    "name",
    "cache",
    "sensitive",
    "throttle",
    "retry",
    "circuit",
    "idempotency",
    "auth",
];

/// Keys accepted by `#[seam(...)]` on a trait.
pub(crate) const SEAM_KEYS: &[&str] = &[
    "base_url", "headers", "timeout", "client", "throttle", "auth",
];
const METHOD_FLAGS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "method"];
const TARGETS: &[&str] = &["path", "url"];

/// HTTP methods a stitch can use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl HttpMethod {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            "HEAD" => Self::Head,
            _ => return None,
        })
    }
}

/// Where the request goes.
pub(crate) enum Target {
    /// Joined to the base URL (method's, seam's, or the runtime's override).
    Path(Template, LitStr),
    /// A complete URL; never joined to a base URL.
    Url(Template, LitStr),
}

impl Target {
    pub(crate) fn template(&self) -> &Template {
        match self {
            Target::Path(t, _) | Target::Url(t, _) => t,
        }
    }
    pub(crate) fn literal(&self) -> &LitStr {
        match self {
            Target::Path(_, l) | Target::Url(_, l) => l,
        }
    }
}

/// Settings a seam gives all its methods.
#[derive(Default)]
pub(crate) struct SeamConfig {
    pub(crate) base_url: Option<LitStr>,
    pub(crate) headers: Vec<(LitStr, LitStr)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) each: Option<Duration>,
    /// `client = "AcmeApi"`, already checked to be a Rust identifier.
    pub(crate) client: Option<Ident>,
    pub(crate) throttle: Option<ThrottleModel>,
    /// `auth = "acme"`: the strategy every method authenticates with unless it names its own.
    pub(crate) auth: Option<LitStr>,
}

/// `auth = "acme"`: the name of a strategy registered on the runtime builder (or `"none"`).
/// Resolved when the client is built; here only a name that could never be registered is refused.
fn auth(args: &Args, errors: &mut Errors) -> Option<LitStr> {
    let lit = args.string("auth", "auth = \"acme\"", errors)?;
    let value = lit.value();
    // The name is looked up as written: surrounding or embedded whitespace is almost certainly
    // a typo that would only surface as a run-time "not registered" error.
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.at(
            lit.span(),
            format!(
                "`auth` names a strategy registered with `Runtime::builder().auth_strategy(\"acme\", strategy)`, or is `\"none\"`; found `{value:?}`: use a non-empty name without spaces"
            ),
        );
        return None;
    }
    Some(lit)
}

/// A duration literal, or an error at it saying which setting (`what`) it was for.
fn duration_of(lit: &LitStr, what: &str, errors: &mut Errors) -> Option<Duration> {
    match spec::duration(&lit.value()) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.at(lit.span(), format!("invalid {what}: {e}"));
            None
        }
    }
}

/// The elements of `key = [a, b, ...]`; anything else is reported with `expected`.
fn list_items<'a>(arg: &'a args::Arg, expected: &str, errors: &mut Errors) -> Vec<&'a syn::Expr> {
    match &arg.value {
        args::Value::Expr(syn::Expr::Array(a)) => a.elems.iter().collect(),
        other => {
            errors.at(other.span(&arg.key), expected);
            Vec::new()
        }
    }
}

/// `on = [429, 503]`: HTTP status codes.
pub(crate) fn statuses(arg: &args::Arg, errors: &mut Errors) -> Vec<u16> {
    let items = list_items(
        arg,
        "expected a list of status codes: `on = [429, 503]`",
        errors,
    );
    let mut out = Vec::new();
    for item in items {
        match item {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(i),
                ..
            }) => match i.base10_parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => out.push(n),
                _ => errors.at(
                    i.span(),
                    format!("`{i}` is not an HTTP status code: status codes are 100 to 599"),
                ),
            },
            other => errors.spanned(other, "expected a status code such as `429`"),
        }
    }
    out
}

/// A fully described stitch.
pub(crate) struct Stitch {
    pub(crate) ident: Ident,
    /// `Trait::method` or `function`, without the module path (added at expansion).
    pub(crate) display_name: String,
    pub(crate) method: HttpMethod,
    pub(crate) target: Option<Target>,
    pub(crate) base_url: Option<LitStr>,
    pub(crate) headers: Vec<(LitStr, LitStr)>,
    pub(crate) pick: Vec<String>,
    /// The `pick` literal, for rules about what can be picked.
    pub(crate) pick_lit: Option<LitStr>,
    /// `name = "..."`, for the rule that names are unique in a seam.
    pub(crate) name_lit: Option<LitStr>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) arguments: Vec<Argument>,
    pub(crate) output: Option<Output>,
    /// The span of a method-level `base_url`, for the `url` conflict.
    pub(crate) base_url_key: Option<Span>,
    /// `path`/`url` (or a misspelling of them) was written: a missing `target` was already reported.
    pub(crate) target_given: bool,
    pub(crate) cache: Option<CacheModel>,
    /// The method's own throttle.
    pub(crate) throttle: Option<ThrottleModel>,
    /// The seam's throttle (acquired first) and the seam's name, for trait methods.
    pub(crate) seam_throttle: Option<ThrottleModel>,
    pub(crate) seam_name: Option<String>,
    pub(crate) each: Option<Duration>,
    pub(crate) retry: Option<RetryModel>,
    pub(crate) circuit: Option<CircuitModel>,
    pub(crate) idempotency: Option<IdempotencyModel>,
    /// The `sensitive` key, when given, and whether it came after `cache`.
    pub(crate) sensitive: Option<(Span, bool)>,
    /// The auth strategy's name: the method's `auth`, else the seam's.
    pub(crate) auth: Option<LitStr>,
}

/// The generated client's name must be a Rust identifier (`Ident::new` would panic on `"acme-client"`).
fn client_ident(lit: &LitStr, errors: &mut Errors) -> Option<Ident> {
    let value = lit.value();
    match syn::parse_str::<Ident>(&value) {
        Ok(mut ident) => {
            ident.set_span(lit.span());
            Some(ident)
        }
        Err(_) => {
            let suggestion: String = value
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect();
            let hint = match syn::parse_str::<Ident>(&suggestion) {
                Ok(_) => format!(", e.g. `client = \"{suggestion}\"`"),
                Err(_) => ", e.g. `client = \"AcmeClient\"`".to_owned(),
            };
            errors.at(
                lit.span(),
                format!("`client` names the generated struct, so it must be a Rust identifier (not a keyword); found `{value:?}`{hint}"),
            );
            None
        }
    }
}

/// A stitch that passed every check: what `expand` reads, with no part left undecided.
pub(crate) struct Checked {
    pub(crate) stitch: Stitch,
    pub(crate) target: Target,
    pub(crate) output: Output,
    /// One role per argument of `stitch.arguments`, in order.
    pub(crate) roles: Vec<Role>,
}

impl std::ops::Deref for Checked {
    type Target = Stitch;
    fn deref(&self) -> &Stitch {
        &self.stitch
    }
}

impl Stitch {
    /// The checked form, or `None` when a part is missing (always already reported as an error).
    pub(crate) fn checked(mut self) -> Option<Checked> {
        let target = self.target.take()?;
        let output = self.output.take()?;
        let roles = self
            .arguments
            .iter()
            .map(|a| a.role.clone())
            .collect::<Option<Vec<_>>>()?;
        Some(Checked {
            stitch: self,
            target,
            output,
            roles,
        })
    }
}

/// Reads `#[seam(...)]`.
pub(crate) fn seam_config(tokens: proc_macro2::TokenStream, errors: &mut Errors) -> SeamConfig {
    let raw = args::parse(tokens, None, errors);
    let args = Args::new(raw, SEAM_KEYS, &[], "seam", errors);
    SeamConfig {
        base_url: base_url(&args, errors),
        headers: args
            .get("headers")
            .map(|a| args::header_pairs(a, errors))
            .unwrap_or_default(),
        timeout: None,
        each: None,
        client: args
            .string("client", "client = \"AcmeApi\"", errors)
            .and_then(|lit| client_ident(&lit, errors)),
        throttle: throttle(&args, errors),
        auth: auth(&args, errors),
    }
    .with_timeouts(timeouts(&args, errors))
}

impl SeamConfig {
    fn with_timeouts(mut self, (total, each): Timeouts) -> Self {
        self.timeout = total;
        self.each = each.map(|(d, _)| d);
        self
    }
}

/// The total, and `each` with the span of its literal.
type Timeouts = (Option<Duration>, Option<(Duration, Span)>);

/// `timeout = "5s"` (the total) or `timeout(total = "5s", each = "1s")`.
fn timeouts(args: &Args, errors: &mut Errors) -> Timeouts {
    let Some(arg) = args.get("timeout") else {
        return (None, None);
    };
    let parse = |lit: &LitStr, key: &str, errors: &mut Errors| {
        duration_of(lit, &format!("`{key}`"), errors)
    };
    match &arg.value {
        args::Value::Lit(syn::Lit::Str(lit)) => (parse(lit, "timeout", errors), None),
        args::Value::List(list) => {
            let inner = args::nested(list, &["total", "each"], "timeout", errors);
            let total = inner
                .string("total", "total = \"10s\"", errors)
                .and_then(|l| parse(&l, "total", errors));
            let each_lit = inner.string("each", "each = \"2s\"", errors);
            let each = each_lit.as_ref().and_then(|l| parse(l, "each", errors));
            // An attempt can never run longer than the whole call: `each` above `total` is a
            // bound that never applies, so it is almost certainly a mix-up of the two.
            if let (Some(t), Some(e), Some(lit)) = (total, each, &each_lit) {
                if e > t {
                    errors.at(
                        lit.span(),
                        format!("`each` ({e:?}) is longer than `total` ({t:?}): one attempt cannot outlast the whole call; make `each` at most `total`"),
                    );
                }
            }
            if inner.missing("total") && inner.missing("each") {
                errors.at(list.delimiter.span().join(), "`timeout(...)` needs `total`, `each` or both: e.g. `timeout(total = \"10s\", each = \"2s\")`");
            }
            (total, each.zip(each_lit.map(|l| l.span())))
        }
        other => {
            errors.at(
                other.span(&arg.key),
                "expected `timeout = \"10s\"` or `timeout(total = \"10s\", each = \"2s\")`",
            );
            (None, None)
        }
    }
}

fn base_url(args: &Args, errors: &mut Errors) -> Option<LitStr> {
    let lit = args.string("base_url", "base_url = \"https://api.example.com\"", errors)?;
    let value = lit.value();
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        errors.at(
            lit.span(),
            format!(
                "`base_url` must be an absolute `http://` or `https://` URL; found `\"{value}\"`"
            ),
        );
        return None;
    }
    if let Some(problem) = url_problem(&value) {
        errors.at(
            lit.span(),
            format!("invalid `base_url` `\"{value}\"`: {problem}"),
        );
        return None;
    }
    if value.contains(['?', '#']) {
        errors.at(
            lit.span(),
            format!("`base_url` `\"{value}\"` has a query or fragment, which no request would carry; put fixed query pairs in each stitch's `path` (e.g. `path = \"/users?x=1\"`)"),
        );
        return None;
    }
    Some(lit)
}

/// Why an absolute URL (whose `{placeholders}` each stand for one segment) could never be sent,
/// or `None`. Checked at compile time: a URL that fails here would fail every call at run time.
fn url_problem(value: &str) -> Option<String> {
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "it contains {c:?}; a URL has no spaces or control characters (percent-encode them, e.g. `%20`)"
        ));
    }
    let mut filled = String::with_capacity(value.len());
    let mut in_placeholder = false;
    for c in value.chars() {
        match c {
            '{' => in_placeholder = true,
            '}' if in_placeholder => {
                in_placeholder = false;
                filled.push('x');
            }
            _ if in_placeholder => {}
            c => filled.push(c),
        }
    }
    match url::Url::parse(&filled) {
        Err(e) => Some(format!("{e}; write e.g. `\"https://api.example.com\"`")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Some("the scheme must be `http` or `https`".to_owned())
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            Some("it has no host; write e.g. `\"https://api.example.com\"`".to_owned())
        }
        Ok(_) => None,
    }
}

/// Builds a stitch from its attribute arguments and signature.
pub(crate) fn stitch(
    tokens: proc_macro2::TokenStream,
    sig: &Signature,
    seam: Option<(&Ident, &SeamConfig)>,
    errors: &mut Errors,
) -> Stitch {
    let raw = args::parse(tokens, None, errors);
    // After a syntax error the target may be the part that did not parse: say nothing about it.
    let target_given = raw.broken
        || raw.entries.iter().any(|a| {
            let key = a.key.to_string();
            TARGETS.contains(&key.as_str())
                || (!STITCH_KEYS.contains(&key.as_str())
                    && !crate::diag::did_you_mean(&key, TARGETS.iter().copied()).is_empty())
        });
    let args = Args::new(raw, STITCH_KEYS, &[METHOD_FLAGS, TARGETS], "stitch", errors);

    let method = method(&args, errors);
    let target = target(&args, errors);
    let method_base = base_url(&args, errors);
    let mut headers: Vec<(LitStr, LitStr)> =
        seam.map(|(_, s)| s.headers.clone()).unwrap_or_default();
    if let Some(arg) = args.get("headers") {
        for (name, value) in args::header_pairs(arg, errors) {
            // A method's header replaces the seam's header of the same name.
            headers.retain(|(n, _)| !n.value().eq_ignore_ascii_case(&name.value()));
            headers.push((name, value));
        }
    }
    let (pick, pick_lit) = pick(&args, errors);
    let (own_total, own_each) = timeouts(&args, errors);
    let timeout = own_total.or_else(|| seam.and_then(|(_, s)| s.timeout));
    // An attempt can never outlast the whole call: a method's `each` above the seam's total it
    // inherits is a bound that never applies (the same rule as within one `timeout(...)`).
    if let (None, Some((e, span)), Some(t)) = (own_total, own_each, timeout) {
        if e > t {
            errors.at(
                span,
                format!("`each` ({e:?}) is longer than the seam's total `timeout` ({t:?}): one attempt cannot outlast the whole call; make `each` at most {t:?}, or give this method its own `total`"),
            );
        }
    }
    // The seam's `each` above this method's own total never applies either: refused at the
    // method's `timeout`, which must then say its own `each`.
    if let (Some(t), None, Some(e)) = (own_total, own_each, seam.and_then(|(_, s)| s.each)) {
        if e > t {
            if let Some(arg) = args.get("timeout") {
                let span = match &arg.value {
                    args::Value::Lit(lit) => lit.span(),
                    _ => arg.key.span(),
                };
                errors.at(
                    span,
                    format!("this method's total `timeout` ({t:?}) is shorter than the seam's `each` ({e:?}): one attempt cannot outlast the whole call; give the method its own `each`, e.g. `timeout(total = \"{t:?}\", each = \"{t:?}\")`, or a longer total"),
                );
            }
        }
    }
    let each = own_each
        .map(|(d, _)| d)
        .or_else(|| seam.and_then(|(_, s)| s.each));
    let name_lit = args.string("name", "name = \"get_user\"", errors);
    // The name starts every error message and labels traces and metrics: it must say something.
    let name_lit = name_lit.filter(|lit| {
        let value = lit.value();
        let blank = value.trim().is_empty() || value.chars().any(char::is_control);
        if blank {
            errors.at(
                lit.span(),
                format!("`name` labels this stitch in errors, traces and metrics; found `{value:?}`: use a non-empty name without control characters, e.g. `name = \"get_user\"`"),
            );
        }
        !blank
    });
    let display_name = match (&name_lit, seam) {
        (Some(n), _) => n.value(),
        (None, Some((trait_ident, _))) => format!("{trait_ident}::{}", sig.ident),
        (None, None) => sig.ident.to_string(),
    };
    let arguments = arguments(sig, errors);
    let output = output(sig, errors);
    let base_url_key = args.get("base_url").map(|a| a.key.span());
    let base_url = method_base.or_else(|| seam.and_then(|(_, s)| s.base_url.clone()));

    Stitch {
        ident: sig.ident.clone(),
        display_name,
        method,
        target,
        base_url,
        headers,
        pick,
        pick_lit,
        name_lit,
        timeout,
        each,
        arguments,
        output,
        base_url_key,
        target_given,
        cache: cache(&args, errors),
        throttle: throttle(&args, errors),
        seam_throttle: seam.and_then(|(_, s)| s.throttle.clone()),
        seam_name: seam.map(|(t, _)| t.to_string()),
        retry: retry(&args, errors),
        circuit: circuit(&args, errors),
        idempotency: idempotency(&args, errors),
        sensitive: args
            .flag("sensitive", errors)
            .map(|span| (span, args.index("sensitive") > args.index("cache"))),
        auth: auth(&args, errors).or_else(|| seam.and_then(|(_, s)| s.auth.clone())),
    }
}

fn method(args: &Args, errors: &mut Errors) -> HttpMethod {
    for flag in ["get", "post", "put", "patch", "delete", "head"] {
        if args.flag(flag, errors).is_some() {
            return HttpMethod::from_name(flag).unwrap_or(HttpMethod::Get);
        }
    }
    if let Some(lit) = args.string("method", "method = \"POST\"", errors) {
        match HttpMethod::from_name(&lit.value()) {
            Some(m) => return m,
            None => errors.at(
                lit.span(),
                format!(
                    "unknown HTTP method `{}`: expected one of `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD` (or the bare key, e.g. `post`)",
                    lit.value()
                ),
            ),
        }
    }
    HttpMethod::Get
}

fn target(args: &Args, errors: &mut Errors) -> Option<Target> {
    if let Some(lit) = args.string("path", "path = \"/users/{id}\"", errors) {
        let value = lit.value();
        if !value.starts_with('/') {
            errors.at(
                lit.span(),
                format!("`path` must start with `/`; found `\"{value}\"` (for a complete URL use `url = \"...\"`)"),
            );
            return None;
        }
        return match spec::template(&value) {
            Ok(t) => Some(Target::Path(t, lit)),
            Err(e) => {
                errors.at(lit.span(), format!("malformed path template: {e}"));
                None
            }
        };
    }
    if let Some(lit) = args.string(
        "url",
        "url = \"https://api.example.com/users/{id}\"",
        errors,
    ) {
        let value = lit.value();
        if !(value.starts_with("http://") || value.starts_with("https://")) {
            errors.at(
                lit.span(),
                format!("`url` must be an absolute `http://` or `https://` URL; found `\"{value}\"` (for a path under the base URL use `path = \"...\"`)"),
            );
            return None;
        }
        if let Some(problem) = url_problem(&value) {
            errors.at(
                lit.span(),
                format!("invalid `url` `\"{value}\"`: {problem}"),
            );
            return None;
        }
        return match spec::template(&value) {
            Ok(t) => Some(Target::Url(t, lit)),
            Err(e) => {
                errors.at(lit.span(), format!("malformed url template: {e}"));
                None
            }
        };
    }
    None
}

fn pick(args: &Args, errors: &mut Errors) -> (Vec<String>, Option<LitStr>) {
    let Some(lit) = args.string("pick", "pick = \"data.items\"", errors) else {
        return (Vec::new(), None);
    };
    let value = lit.value();
    let parts: Vec<String> = value.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        errors.at(
            lit.span(),
            format!("`pick` is a dot path of non-empty keys such as `\"data\"` or `\"data.items\"`; found `\"{value}\"`"),
        );
        return (Vec::new(), None);
    }
    (parts, Some(lit))
}
