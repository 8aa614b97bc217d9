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
];
/// Keys accepted inside `retry(...)`.
pub(crate) const RETRY_KEYS: &[&str] = &[
    "attempts",
    "on",
    "backoff",
    "base",
    "max",
    "respect_retry_after",
];
const BACKOFFS: &[&str] = &["fixed", "expo", "expo-jitter"];
/// Keys accepted inside `throttle(...)`.
pub(crate) const THROTTLE_KEYS: &[&str] = &[
    "rate",
    "concurrency",
    "pool",
    "burst",
    "max_wait",
    "delegate",
    "on",
];
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
/// Keys accepted by `#[seam(...)]` on a trait.
pub(crate) const SEAM_KEYS: &[&str] = &["base_url", "headers", "timeout", "client", "throttle"];
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

/// What an argument becomes in the request.
#[derive(Clone)]
pub(crate) enum Role {
    Path,
    Query(String),
    Body { form: bool },
    Header(String),
}

impl Role {
    pub(crate) fn describe(&self) -> String {
        match self {
            Role::Path => "a path placeholder".into(),
            Role::Query(_) => "`#[query]`".into(),
            Role::Body { .. } => "`#[body]`".into(),
            Role::Header(_) => "`#[header]`".into(),
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

/// Settings a seam gives all its methods.
#[derive(Default)]
pub(crate) struct SeamConfig {
    pub(crate) base_url: Option<LitStr>,
    pub(crate) headers: Vec<(LitStr, LitStr)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) each: Option<Duration>,
    pub(crate) client: Option<LitStr>,
    pub(crate) throttle: Option<ThrottleModel>,
}

/// Who shares a throttle's budget.
#[derive(Clone, PartialEq)]
pub(crate) enum PoolModel {
    Stitch,
    Host,
    Seam,
    Named(String),
}

/// A `throttle = "2/s"` or `throttle(...)` declaration.
#[derive(Clone)]
pub(crate) struct ThrottleModel {
    pub(crate) rate: Option<(u64, Duration, Span, String)>,
    pub(crate) burst: Option<u32>,
    pub(crate) concurrency: Option<(u32, Span)>,
    pub(crate) pool: Option<(PoolModel, Span)>,
    pub(crate) max_wait: Option<Duration>,
    /// `delegate`, with the statuses that mean "rate limited" (default 429).
    pub(crate) delegate: Option<Vec<u16>>,
}

impl ThrottleModel {
    pub(crate) fn per_second(&self) -> Option<f64> {
        self.rate
            .as_ref()
            .map(|(n, w, _, _)| *n as f64 / w.as_secs_f64())
    }
}

/// Reads `throttle = "2/s"` or `throttle(rate = "2/s", concurrency = 4, pool = "host", ...)`.
pub(crate) fn throttle(args: &Args, errors: &mut Errors) -> Option<ThrottleModel> {
    let arg = args.get("throttle")?;
    let rate_of = |lit: &LitStr, errors: &mut Errors| match spec::rate(&lit.value()) {
        Ok((n, w)) => Some((n, w, lit.span(), lit.value())),
        Err(e) => {
            errors.at(lit.span(), format!("invalid throttle rate: {e}"));
            None
        }
    };
    match &arg.value {
        args::Value::Lit(syn::Lit::Str(lit)) => Some(ThrottleModel {
            rate: Some(rate_of(lit, errors)?),
            burst: None,
            concurrency: None,
            pool: None,
            max_wait: None,
            delegate: None,
        }),
        args::Value::List(list) => {
            let raw = args::parse(list.tokens.clone(), errors);
            let inner = Args::new(raw, THROTTLE_KEYS, &[], "throttle", errors);
            let rate = inner
                .string("rate", "rate = \"2/s\"", errors)
                .and_then(|l| rate_of(&l, errors));
            let concurrency = inner
                .int("concurrency", "concurrency = 4", errors)
                .and_then(|lit| match lit.base10_parse::<u32>() {
                    Ok(0) => {
                        errors.at(
                            lit.span(),
                            "`concurrency` must be at least 1: with 0 no call could ever run",
                        );
                        None
                    }
                    Ok(n) => Some((n, lit.span())),
                    Err(_) => {
                        errors.at(
                            lit.span(),
                            "`concurrency` must be a whole number from 1 to 4294967295",
                        );
                        None
                    }
                });
            let burst = inner.int("burst", "burst = 2", errors).and_then(|lit| {
                let n = lit.base10_parse::<u32>();
                if n.is_err() {
                    errors.at(lit.span(), "`burst` must be a whole number (extra requests tolerated at once)");
                }
                if !inner.has_key("rate") {
                    errors.at(
                        lit.span(),
                        "`burst` needs a `rate`: it is the number of extra requests the pacing tolerates at once; add `rate = \"...\"` or remove `burst`",
                    );
                }
                n.ok()
            });
            let pool = inner.string("pool", "pool = \"host\"", errors).and_then(|lit| {
                let v = lit.value();
                let kind = match v.as_str() {
                    "stitch" => PoolModel::Stitch,
                    "host" => PoolModel::Host,
                    "seam" => PoolModel::Seam,
                    "" => {
                        errors.at(lit.span(), "empty pool name: use `\"stitch\"`, `\"host\"`, `\"seam\"` or a name such as `\"billing\"`");
                        return None;
                    }
                    other => {
                        let hint = crate::diag::did_you_mean(other, ["stitch", "host", "seam"]);
                        if !hint.is_empty() {
                            errors.at(
                                lit.span(),
                                format!("unknown pool kind `\"{other}\"`{hint} (a named pool needs a name distinct from the kinds `stitch`, `host`, `seam`)"),
                            );
                            return None;
                        }
                        if !other.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
                            errors.at(lit.span(), format!("invalid pool name `\"{other}\"`: use letters, digits, `-`, `_`, `.` or `:`"));
                            return None;
                        }
                        PoolModel::Named(other.to_owned())
                    }
                };
                Some((kind, lit.span()))
            });
            let max_wait = inner
                .string("max_wait", "max_wait = \"10s\"", errors)
                .and_then(|lit| duration_of(&lit, "`max_wait`", errors));
            let delegate_flag = inner.flag("delegate", errors);
            let on = inner.get("on").map(|a| statuses(a, errors));
            if let (Some(on_arg), None) = (inner.get("on"), delegate_flag) {
                errors.at(
                    on_arg.key.span(),
                    "`on` lists the statuses of `delegate` mode: add `delegate`, or remove `on`",
                );
            }
            let delegate = delegate_flag.map(|span| {
                // Pacing and delegation are alternatives: a delegated throttle leaves pacing to the
                // upstream, so a rate or cap next to it would be silently doing both.
                let pacing: Vec<&str> = [
                    ("rate", rate.is_some()),
                    ("concurrency", concurrency.is_some()),
                    ("burst", burst.is_some()),
                ]
                .into_iter()
                .filter_map(|(k, given)| given.then_some(k))
                .collect();
                if !pacing.is_empty() {
                    // Reported once, at the later of `delegate` and the pacing keys.
                    let list = pacing
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ");
                    let last = pacing.iter().copied().max_by_key(|k| inner.index(k));
                    let (at, message) = match last.and_then(|k| inner.get(k)) {
                        Some(a) if inner.index(&a.key.to_string()) > inner.index("delegate") => {
                            (a.key.span(), format!("`{}` conflicts with `delegate`", a.key))
                        }
                        _ => (span, format!("`delegate` conflicts with {list}")),
                    };
                    errors.at(
                        at,
                        format!("{message}: delegate mode does not pace, it reports the upstream's rate-limit status (429 unless `on` says otherwise) as a typed error; remove `delegate`, or remove {list}"),
                    );
                }
                on.clone().unwrap_or_else(|| vec![429])
            });
            if rate.is_none()
                && concurrency.is_none()
                && delegate.is_none()
                && !pacing_written(&inner)
            {
                errors.at(
                    list.delimiter.span().join(),
                    "`throttle(...)` needs a `rate`, a `concurrency` or `delegate`: e.g. `throttle(rate = \"2/s\", concurrency = 4)`",
                );
            }
            Some(ThrottleModel {
                rate,
                burst,
                concurrency,
                pool,
                max_wait,
                delegate,
            })
        }
        other => {
            errors.at(
                other.span(&arg.key),
                "expected `throttle = \"<rate>\"` (e.g. `throttle = \"2/s\"`) or `throttle(rate = \"2/s\", ...)`",
            );
            None
        }
    }
}

/// A rate or cap was written (perhaps invalid, and then already reported).
fn pacing_written(inner: &Args) -> bool {
    inner.has_key("rate") || inner.has_key("concurrency")
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
}

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

/// Reads `#[seam(...)]`.
pub(crate) fn seam_config(tokens: proc_macro2::TokenStream, errors: &mut Errors) -> SeamConfig {
    let raw = args::parse(tokens, errors);
    let args = Args::new(raw, SEAM_KEYS, &[], "seam", errors);
    SeamConfig {
        base_url: base_url(&args, errors),
        headers: args
            .get("headers")
            .map(|a| args::header_pairs(a, errors))
            .unwrap_or_default(),
        timeout: None,
        each: None,
        client: args.string("client", "client = \"AcmeApi\"", errors),
        throttle: throttle(&args, errors),
    }
    .with_timeouts(timeouts(&args, errors))
}

impl SeamConfig {
    fn with_timeouts(mut self, (total, each): (Option<Duration>, Option<Duration>)) -> Self {
        self.timeout = total;
        self.each = each;
        self
    }
}

/// `timeout = "5s"` (the total) or `timeout(total = "5s", each = "1s")`.
fn timeouts(args: &Args, errors: &mut Errors) -> (Option<Duration>, Option<Duration>) {
    let Some(arg) = args.get("timeout") else {
        return (None, None);
    };
    let parse = |lit: &LitStr, key: &str, errors: &mut Errors| {
        duration_of(lit, &format!("`{key}`"), errors)
    };
    match &arg.value {
        args::Value::Lit(syn::Lit::Str(lit)) => (parse(lit, "timeout", errors), None),
        args::Value::List(list) => {
            let raw = args::parse(list.tokens.clone(), errors);
            let inner = Args::new(raw, &["total", "each"], &[], "timeout", errors);
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
            if !inner.has_key("total") && !inner.has_key("each") {
                errors.at(list.delimiter.span().join(), "`timeout(...)` needs `total`, `each` or both: e.g. `timeout(total = \"10s\", each = \"2s\")`");
            }
            (total, each)
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

/// A stitch's `retry = N` or `retry(...)`.
pub(crate) struct RetryModel {
    pub(crate) key: Span,
    pub(crate) attempts: u32,
    pub(crate) on: Option<Vec<u16>>,
    /// `Fixed`, `Expo` or `ExpoJitter`.
    pub(crate) backoff: Option<&'static str>,
    pub(crate) base: Option<Duration>,
    pub(crate) max: Option<Duration>,
    pub(crate) respect_retry_after: bool,
}

/// `retry = 3` or `retry(attempts = 3, on = [503], backoff = "expo-jitter", base = "100ms", ...)`.
fn retry(args: &Args, errors: &mut Errors) -> Option<RetryModel> {
    let arg = args.get("retry")?;
    let key = arg.key.span();
    // `name` is how the count was written: `retry = N` or `retry(attempts = N)`.
    let attempts_of = |lit: &syn::LitInt, name: &str, errors: &mut Errors| match lit
        .base10_parse::<u32>()
    {
        Ok(0) => {
            errors.at(lit.span(), format!("`{name}` counts the first try too, so it must be at least 1 (and 1 means no retry); e.g. `{name} = 3`"));
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            errors.at(lit.span(), "`attempts` must be a whole number such as `3`");
            None
        }
    };
    let retry_duration = |lit: &LitStr, name: &str, errors: &mut Errors| {
        duration_of(lit, &format!("retry `{name}`"), errors)
    };
    match &arg.value {
        args::Value::Lit(syn::Lit::Int(lit)) => Some(RetryModel {
            key,
            attempts: attempts_of(lit, "retry", errors)?,
            on: None,
            backoff: None,
            base: None,
            max: None,
            respect_retry_after: true,
        }),
        args::Value::List(list) => {
            let raw = args::parse(list.tokens.clone(), errors);
            let inner = Args::new(raw, RETRY_KEYS, &[], "retry", errors);
            let attempts = match inner.int("attempts", "attempts = 3", errors) {
                Some(lit) => attempts_of(&lit, "attempts", errors),
                None if inner.has_key("attempts") => None,
                None => {
                    errors.at(
                        list.delimiter.span().join(),
                        "`retry(...)` needs `attempts`: e.g. `retry(attempts = 3)`",
                    );
                    None
                }
            };
            let on = inner.get("on").map(|a| statuses(a, errors));
            let backoff = inner.string("backoff", "backoff = \"expo-jitter\"", errors).and_then(|lit| {
                match lit.value().as_str() {
                    "fixed" => Some("Fixed"),
                    "expo" => Some("Expo"),
                    "expo-jitter" => Some("ExpoJitter"),
                    other => {
                        errors.at(
                            lit.span(),
                            format!(
                                "unknown backoff curve `\"{other}\"`: expected `\"fixed\"`, `\"expo\"` or `\"expo-jitter\"`{}",
                                crate::diag::did_you_mean(other, BACKOFFS.iter().copied())
                            ),
                        );
                        None
                    }
                }
            });
            let base = inner
                .string("base", "base = \"100ms\"", errors)
                .and_then(|l| retry_duration(&l, "base", errors));
            let max = inner
                .string("max", "max = \"10s\"", errors)
                .and_then(|l| retry_duration(&l, "max", errors));
            if let (Some(b), Some(m), Some(arg)) = (base, max, inner.get("max")) {
                if b > m {
                    errors.at(arg.value.span(&arg.key), format!("`max` ({m:?}) is below `base` ({b:?}): every wait would be cut to `max`; raise `max` or lower `base`"));
                }
            }
            let respect_retry_after = match inner.get("respect_retry_after") {
                Some(a) => match &a.value {
                    args::Value::Lit(syn::Lit::Bool(b)) => b.value,
                    other => {
                        errors.at(
                            other.span(&a.key),
                            "expected `respect_retry_after = true` or `false`",
                        );
                        true
                    }
                },
                None => true,
            };
            Some(RetryModel {
                key,
                attempts: attempts?,
                on,
                backoff,
                base,
                max,
                respect_retry_after,
            })
        }
        other => {
            errors.at(
                other.span(&arg.key),
                "expected `retry = <attempts>` (e.g. `retry = 3`) or `retry(attempts = 3, ...)`",
            );
            None
        }
    }
}

/// A stitch's `circuit(failures = N, cooldown = "...")`.
pub(crate) struct CircuitModel {
    pub(crate) failures: u32,
    pub(crate) cooldown: Duration,
}

fn circuit(args: &Args, errors: &mut Errors) -> Option<CircuitModel> {
    let arg = args.get("circuit")?;
    let args::Value::List(list) = &arg.value else {
        errors.at(
            arg.value.span(&arg.key),
            "expected `circuit(failures = 5, cooldown = \"30s\")`",
        );
        return None;
    };
    let raw = args::parse(list.tokens.clone(), errors);
    let inner = Args::new(raw, &["failures", "cooldown"], &[], "circuit", errors);
    // Both numbers define the breaker: without a threshold it never opens, without a cooldown it
    // never closes again.
    let mut missing = Vec::new();
    if !inner.has_key("failures") {
        missing.push("`failures`");
    }
    if !inner.has_key("cooldown") {
        missing.push("`cooldown`");
    }
    if !missing.is_empty() {
        errors.at(
            list.delimiter.span().join(),
            format!("`circuit(...)` is missing {}: both are required, e.g. `circuit(failures = 5, cooldown = \"30s\")`", missing.join(" and ")),
        );
    }
    let failures = inner.int("failures", "failures = 5", errors).and_then(|lit| match lit.base10_parse::<u32>() {
        Ok(0) | Err(_) => {
            errors.at(lit.span(), "`failures` must be at least 1: the number of consecutive failed calls that opens the circuit");
            None
        }
        Ok(n) => Some(n),
    });
    let cooldown = inner
        .string("cooldown", "cooldown = \"30s\"", errors)
        .and_then(|lit| duration_of(&lit, "circuit `cooldown`", errors));
    Some(CircuitModel {
        failures: failures?,
        cooldown: cooldown?,
    })
}

/// A stitch's `idempotency` or `idempotency(header = "...", from = "argument")`.
pub(crate) struct IdempotencyModel {
    pub(crate) key: Span,
    pub(crate) header: String,
    pub(crate) from: Option<LitStr>,
}

fn idempotency(args: &Args, errors: &mut Errors) -> Option<IdempotencyModel> {
    let arg = args.get("idempotency")?;
    let key = arg.key.span();
    match &arg.value {
        args::Value::Flag => Some(IdempotencyModel {
            key,
            header: "idempotency-key".into(),
            from: None,
        }),
        args::Value::List(list) => {
            let raw = args::parse(list.tokens.clone(), errors);
            let inner = Args::new(raw, &["header", "from"], &[], "idempotency", errors);
            let header = match inner.string("header", "header = \"idempotency-key\"", errors) {
                Some(lit) => match crate::check::header_name(&lit.value()) {
                    Ok(()) => lit.value().to_ascii_lowercase(),
                    Err(e) => {
                        errors.at(lit.span(), e);
                        return None;
                    }
                },
                None => "idempotency-key".into(),
            };
            Some(IdempotencyModel {
                key,
                header,
                from: inner.string("from", "from = \"order_id\"", errors),
            })
        }
        other => {
            errors.at(other.span(&arg.key), "expected `idempotency` or `idempotency(header = \"idempotency-key\", from = \"argument\")`");
            None
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
    Some(lit)
}

/// Builds a stitch from its attribute arguments and signature.
pub(crate) fn stitch(
    tokens: proc_macro2::TokenStream,
    sig: &Signature,
    seam: Option<(&Ident, &SeamConfig)>,
    errors: &mut Errors,
) -> Stitch {
    let raw = args::parse(tokens, errors);
    let target_given = raw.iter().any(|a| {
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
    let pick = pick(&args, errors);
    let (own_total, own_each) = timeouts(&args, errors);
    let timeout = own_total.or_else(|| seam.and_then(|(_, s)| s.timeout));
    let each = own_each.or_else(|| seam.and_then(|(_, s)| s.each));
    let display_name = match (args.string("name", "name = \"get_user\"", errors), seam) {
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
    }
}

/// `cache = "5m"` or `cache(ttl = "5m", scope = "app", vary = ["accept-language"], ...)`.
fn cache(args: &Args, errors: &mut Errors) -> Option<CacheModel> {
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
            let raw = args::parse(list.tokens.clone(), errors);
            let inner = Args::new(raw, CACHE_KEYS, &[], "cache", errors);
            let ttl = match inner.string("ttl", "ttl = \"5m\"", errors) {
                Some(lit) => ttl_of(&lit, errors),
                None => {
                    if !inner.has_key("ttl") {
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
fn vary(arg: &args::Arg, errors: &mut Errors) -> Vec<LitStr> {
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

fn pick(args: &Args, errors: &mut Errors) -> Vec<String> {
    let Some(lit) = args.string("pick", "pick = \"data.items\"", errors) else {
        return Vec::new();
    };
    let value = lit.value();
    let parts: Vec<String> = value.split('.').map(str::to_owned).collect();
    if parts.iter().any(String::is_empty) {
        errors.at(
            lit.span(),
            format!("`pick` is a dot path of non-empty keys such as `\"data\"` or `\"data.items\"`; found `\"{value}\"`"),
        );
        return Vec::new();
    }
    parts
}

/// Reads each argument's pattern, type and role attribute (`#[query]`, `#[body]`, `#[header]`).
fn arguments(sig: &Signature, errors: &mut Errors) -> Vec<Argument> {
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
    match (name, &attr.meta) {
        ("query", syn::Meta::Path(_)) => Some(Role::Query(ident_name)),
        ("query", syn::Meta::List(l)) => match syn::parse2::<LitStr>(l.tokens.clone()) {
            Ok(s) if !s.value().is_empty() => Some(Role::Query(s.value())),
            _ => {
                errors.spanned(l, "expected `#[query]` or `#[query(\"name\")]`");
                None
            }
        },
        ("body", syn::Meta::Path(_)) => Some(Role::Body { form: false }),
        ("body", syn::Meta::List(l)) => match syn::parse2::<Ident>(l.tokens.clone()) {
            Ok(i) if i == "form" => Some(Role::Body { form: true }),
            Ok(i) if i == "json" => Some(Role::Body { form: false }),
            _ => {
                errors.spanned(
                    l,
                    "expected `#[body]` (JSON), `#[body(json)]` or `#[body(form)]`",
                );
                None
            }
        },
        ("header", syn::Meta::List(l)) => match syn::parse2::<LitStr>(l.tokens.clone()) {
            Ok(s) => {
                if let Err(e) = crate::check::header_name(&s.value()) {
                    errors.at(s.span(), e);
                    return None;
                }
                Some(Role::Header(s.value().to_ascii_lowercase()))
            }
            Err(_) => {
                errors.spanned(l, "expected `#[header(\"header-name\")]`");
                None
            }
        },
        ("header", _) => {
            errors.spanned(
                attr,
                format!(
                    "`#[header]` needs the header's name: `#[header(\"x-{}\")]`",
                    ident_name.replace('_', "-")
                ),
            );
            None
        }
        (_, other) => {
            errors.spanned(other, format!("expected `#[{name}]`"));
            None
        }
    }
}

/// `-> stitch::Result<T>`: picks the decoder from `T`.
fn output(sig: &Signature, errors: &mut Errors) -> Option<Output> {
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
fn type_text(ty: &Type) -> String {
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

fn classify(ty: Type) -> Output {
    match &ty {
        Type::Tuple(t) if t.elems.is_empty() => Output::Unit(ty),
        Type::Path(tp) if tp.qself.is_none() => {
            let Some(last) = tp.path.segments.last() else {
                return Output::Json(ty);
            };
            match (&last.ident, &last.arguments) {
                (i, PathArguments::None) if i == "String" => Output::Text(ty),
                (i, PathArguments::None) if i == "Bytes" => Output::Bytes(ty),
                (i, PathArguments::AngleBracketed(a)) if i == "Response" && a.args.len() == 1 => {
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
