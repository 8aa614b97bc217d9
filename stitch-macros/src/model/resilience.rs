//! `retry`, `circuit` and `idempotency`: what happens when a call fails.

use super::*;

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
pub(super) fn retry(args: &Args, errors: &mut Errors) -> Option<RetryModel> {
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
            let inner = args::nested(list, RETRY_KEYS, "retry", errors);
            let attempts = match inner.int("attempts", "attempts = 3", errors) {
                Some(lit) => attempts_of(&lit, "attempts", errors),
                None if !inner.missing("attempts") => None,
                None => {
                    errors.at(
                        list.delimiter.span().join(),
                        "`retry(...)` needs `attempts`: e.g. `retry(attempts = 3)`",
                    );
                    None
                }
            };
            let on = inner.get("on").map(|a| statuses(a, errors));
            if let Some(arg) = inner.get("on") {
                meaningless_retry_statuses(arg, errors);
            }
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
    /// `local`: the circuit stays in this process even with a store attached.
    pub(crate) local: bool,
}

/// Keys accepted inside `circuit(...)`.
pub(crate) const CIRCUIT_KEYS: &[&str] = &["failures", "cooldown", "local"];

pub(super) fn circuit(args: &Args, errors: &mut Errors) -> Option<CircuitModel> {
    let arg = args.get("circuit")?;
    let args::Value::List(list) = &arg.value else {
        errors.at(
            arg.value.span(&arg.key),
            "expected `circuit(failures = 5, cooldown = \"30s\")`",
        );
        return None;
    };
    let inner = args::nested(list, CIRCUIT_KEYS, "circuit", errors);
    // Both numbers define the breaker: without a threshold it never opens, without a cooldown it
    // never closes again.
    let mut missing = Vec::new();
    if inner.missing("failures") {
        missing.push("`failures`");
    }
    if inner.missing("cooldown") {
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
    let local = super::throttle::local_flag(&inner, "circuit", "circuit", errors);
    Some(CircuitModel {
        failures: failures?,
        cooldown: cooldown?,
        local: local.is_some(),
    })
}

/// A stitch's `idempotency` or `idempotency(header = "...", from = "argument")`.
pub(crate) struct IdempotencyModel {
    pub(crate) key: Span,
    pub(crate) header: String,
    /// The `header = "..."` literal, when written.
    pub(crate) header_span: Option<Span>,
    pub(crate) from: Option<LitStr>,
}

pub(super) fn idempotency(args: &Args, errors: &mut Errors) -> Option<IdempotencyModel> {
    let arg = args.get("idempotency")?;
    let key = arg.key.span();
    match &arg.value {
        args::Value::Flag => Some(IdempotencyModel {
            key,
            header: "idempotency-key".into(),
            header_span: None,
            from: None,
        }),
        args::Value::List(list) => {
            let inner = args::nested(list, &["header", "from"], "idempotency", errors);
            let header_lit = inner.string("header", "header = \"idempotency-key\"", errors);
            let header = match &header_lit {
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
                header_span: header_lit.map(|l| l.span()),
                from: inner.string("from", "from = \"order_id\"", errors),
            })
        }
        other => {
            errors.at(other.span(&arg.key), "expected `idempotency` or `idempotency(header = \"idempotency-key\", from = \"argument\")`");
            None
        }
    }
}

/// `retry(on = [...])` that could never retry: an empty list (the call would never be retried,
/// which `retry(...)` left out says), or a 1xx or 2xx status (not an error: nothing to retry).
fn meaningless_retry_statuses(arg: &crate::args::Arg, errors: &mut crate::diag::Errors) {
    let crate::args::Value::Expr(syn::Expr::Array(list)) = &arg.value else {
        return;
    };
    if list.elems.is_empty() {
        errors.at(
            list.bracket_token.span.join(),
            "`retry(on = [])` retries on no status: list the error statuses to retry (e.g. `on = [429, 503]`), or leave `on` out for the defaults",
        );
        return;
    }
    for item in &list.elems {
        if let syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) = item
        {
            if let Ok(n @ 100..=299) = i.base10_parse::<u16>() {
                errors.at(
                    i.span(),
                    format!("`{n}` is not an error status, so no call ends with it to be retried: list error statuses such as `429` or `503`"),
                );
            }
        }
    }
}
