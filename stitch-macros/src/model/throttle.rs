//! `throttle = "2/s"` and `throttle(...)`: pacing, concurrency caps, pools and delegate mode.

use super::*;

/// Keys accepted inside `throttle(...)`.
pub(crate) const THROTTLE_KEYS: &[&str] = &[
    "rate",
    "concurrency",
    "pool",
    "burst",
    "max_wait",
    "delegate",
    "on",
    "local",
];

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
    /// `local`: the budget stays in this process even with a store attached.
    pub(crate) local: bool,
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
            local: false,
        }),
        args::Value::List(list) => {
            let inner = args::nested(list, THROTTLE_KEYS, "throttle", errors);
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
                // Writing the default suggests it changes something.
                if matches!(n, Ok(0)) {
                    errors.at(lit.span(), "`burst = 0` is the default (no extra requests at once): remove it");
                    return None;
                }
                // The pacer's tolerance is `interval * burst` nanoseconds; past the pacer's bound it
                // would saturate, i.e. no pacing at all.
                if let (Ok(b), Some((count, window, _, text))) = (&n, &rate) {
                    let tolerance = window.as_nanos() / u128::from(*count) * u128::from(*b);
                    if tolerance > u128::from(spec::PACER_MAX_NANOS) {
                        errors.at(lit.span(), format!("`burst = {b}` is too large for `\"{text}\"`: {b} requests at once would be more than {} days of the rate's budget, which the pacer cannot represent; use a smaller burst", spec::PACER_MAX_NANOS / 86_400_000_000_000));
                        return None;
                    }
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
            let local = local_flag(&inner, "throttle", "budget", errors);
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
            // Delegate mode keeps no budget of its own, so there is nothing to keep in-process:
            // `local` would promise a choice that does not exist. Reported at the later key.
            if let (Some(local_span), Some(delegate_span)) = (local, delegate_flag) {
                let (at, message) = if inner.index("local") > inner.index("delegate") {
                    (local_span, "`local` conflicts with `delegate`")
                } else {
                    (delegate_span, "`delegate` conflicts with `local`")
                };
                errors.at(
                    at,
                    format!("{message}: delegate mode keeps no budget (the upstream's rate-limit status is reported as a typed error), so there is none to keep in-process; remove `local`"),
                );
            }
            if rate.is_none()
                && concurrency.is_none()
                && delegate.is_none()
                && !pacing_written(&inner)
                && !inner.broken()
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
                local: local.is_some(),
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
pub(super) fn pacing_written(inner: &Args) -> bool {
    inner.has_key("rate") || inner.has_key("concurrency")
}

/// `local` inside `throttle(...)` or `circuit(...)`: the state stays in this process even when the
/// runtime has a store attached. A bare flag only: `local = true` would suggest `local = false`
/// means something, and a value of any other kind is a mistake.
pub(super) fn local_flag(
    inner: &Args,
    what: &str,
    noun: &str,
    errors: &mut Errors,
) -> Option<Span> {
    let arg = inner.get("local")?;
    match &arg.value {
        args::Value::Flag => Some(arg.key.span()),
        other => {
            errors.at(
                other.span(&arg.key),
                format!(
                    "`local` takes no value: write `{what}(..., local)` to keep this {noun} in-process with a store attached, or remove it for a fleet-wide one"
                ),
            );
            None
        }
    }
}
