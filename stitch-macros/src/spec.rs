//! The small grammars inside attribute strings: durations (`"5m"`, `"1h30m"`, `"250ms"`) and path
//! templates (`"/users/{id}/posts"`). Parsed once, at compile time; the runtime receives the
//! already-parsed values.
//!
//! Errors are plain strings: the caller attaches them to the literal's span.

use std::time::Duration;

/// Parses `"<n><unit>"` terms (units `ms`, `s`, `m`, `h`, `d`), e.g. `"90s"` or `"1h30m"`.
/// Zero and negative durations are refused: no stitch option means anything with them.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    const FORM: &str = "expected a duration such as `\"500ms\"`, `\"30s\"`, `\"5m\"`, `\"1h30m\"` (units: ms, s, m, h, d)";
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "a duration cannot be negative; found `\"{text}\"`: {FORM}"
        ));
    }
    if trimmed.is_empty() {
        return Err(format!("empty duration: {FORM}"));
    }
    let mut total: u128 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("`\"{text}\"` is not a duration: {FORM}"));
        }
        // `"1.5s"` is not "a number without a unit": say what is wrong and the exact fix.
        if rest[digits..].starts_with('.') {
            return Err(format!(
                "`\"{text}\"`: fractions are not supported in durations; use a smaller unit (e.g. `\"1500ms\"` for `\"1.5s\"`, `\"90s\"` for `\"1.5m\"`)"
            ));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("`\"{text}\"` is too large: {FORM}"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "`\"{text}\"` has no unit: write e.g. `\"{number}s\"` or `\"{number}ms\"`"
                ))
            }
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `\"{text}\"`: {FORM}"
                ))
            }
        };
        total = number
            .checked_mul(millis_per)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= u64::MAX as u128)
            .ok_or_else(|| format!("`\"{text}\"` is too large"))?;
    }
    if total == 0 {
        return Err(format!(
            "a duration must be positive; found `\"{text}\"`: {FORM}"
        ));
    }
    Ok(Duration::from_millis(total as u64))
}

/// The longest pacing interval (and burst tolerance) the runtime's pacer represents: half of `u64`
/// nanoseconds, so adding it to a pacer's clock (nanoseconds since the pacer started) cannot overflow
/// for another ~292 years of uptime.
pub(crate) const PACER_MAX_NANOS: u64 = u64::MAX / 2;

/// Parses a rate `"<n>/<unit>"` or `"<n>/<k><unit>"` (units `ms`, `s`, `m`, `h`, `d`), e.g. `"2/s"`,
/// `"120/m"`, `"100/15m"`. Returns the count and the window.
pub(crate) fn rate(text: &str) -> Result<(u64, Duration), String> {
    const FORM: &str = "expected a rate such as `\"2/s\"`, `\"120/m\"` or `\"100/15m\"` (`<count>/<window>`, window units: ms, s, m, h, d)";
    let Some((count, window)) = text.split_once('/') else {
        return Err(format!("`\"{text}\"` is not a rate: {FORM}"));
    };
    let count = count.trim();
    if count.is_empty() {
        return Err(format!("`\"{text}\"` has no count before `/`: {FORM}"));
    }
    if !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`\"{text}\"`: the count `{count}` is not a whole number: {FORM}"
        ));
    }
    let count: u64 = count
        .parse()
        .map_err(|_| format!("`\"{text}\"`: the count is too large"))?;
    if count == 0 {
        return Err(format!(
            "`\"{text}\"` admits nothing: the count must be at least 1 (to block a stitch, do not call it)"
        ));
    }
    if count > u32::MAX as u64 {
        return Err(format!(
            "`\"{text}\"`: the count is too large (at most {})",
            u32::MAX
        ));
    }
    let window = window.trim();
    // `"2/s"` means one unit: accept a bare unit as `1<unit>`.
    let window_text = if window.starts_with(|c: char| c.is_ascii_digit()) {
        window.to_owned()
    } else {
        format!("1{window}")
    };
    let window = duration(&window_text)
        .map_err(|_| format!("`\"{text}\"`: `{window}` is not a window: {FORM}"))?;
    // The pacer keeps times as `u64` nanoseconds since it started and adds the interval to them:
    // an interval past this bound would wrap (`"1/213504d"` would pace every ~25 minutes).
    if window.as_nanos() / (count as u128) > u128::from(PACER_MAX_NANOS) {
        return Err(format!(
            "`\"{text}\"` is too slow to pace: one request per {} days; the pacer's bound is one per {} days (about 292 years); use a shorter window or more requests per window",
            window.as_secs() / count / 86_400,
            PACER_MAX_NANOS / 86_400_000_000_000
        ));
    }
    if window.as_nanos() / (count as u128) == 0 {
        return Err(format!(
            "`\"{text}\"` is too fast to pace: the spacing would be under a nanosecond"
        ));
    }
    Ok((count, window))
}

/// One piece of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Placeholder(String),
}

/// A parsed template: the pieces before `?`, and a static query tail (without the `?`).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub(crate) pieces: Vec<Piece>,
    pub(crate) static_query: Option<String>,
}

impl Template {
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Placeholder(n) => Some(n.as_str()),
            Piece::Literal(_) => None,
        })
    }
}

/// Parses `"/users/{id}/posts?per_page=50"`. Placeholders are Rust identifiers naming an argument;
/// braces must balance; `#` fragments are refused (never sent to a server).
pub(crate) fn template(text: &str) -> Result<Template, String> {
    if text.contains('#') {
        return Err(format!(
            "`#` is not allowed in a path template: fragments are never sent to the server; found `\"{text}\"`"
        ));
    }
    let (path, static_query) = match text.split_once('?') {
        Some((p, q)) => {
            if q.contains('{') || q.contains('}') {
                return Err(format!(
                    "placeholders are not allowed in the query part of `\"{text}\"`: mark an argument `#[query]` instead"
                ));
            }
            (p, Some(q.to_owned()).filter(|q| !q.is_empty()))
        }
        None => (text, None),
    };
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = path.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    if c == '{' {
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(format!(
                        "unbalanced `{{` at byte {at} in `\"{text}\"`: close the placeholder with `}}`"
                    ));
                }
                if name.is_empty() {
                    return Err(format!(
                        "empty placeholder `{{}}` in `\"{text}\"`: name the argument, e.g. `{{id}}`"
                    ));
                }
                if !is_ident(&name) {
                    return Err(format!(
                        "invalid placeholder `{{{name}}}` in `\"{text}\"`: a placeholder is the name of a function argument, e.g. `{{user_id}}`"
                    ));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Placeholder(name));
            }
            '}' => {
                return Err(format!(
                "unbalanced `}}` at byte {at} in `\"{text}\"`: placeholders look like `{{name}}`"
            ))
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(Template {
        pieces,
        static_query,
    })
}

fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name != "_"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(duration("1.5s").unwrap_err().contains("fractions"));
        for bad in [
            "0s",
            "5x",
            "-1s",
            "",
            "s",
            "5",
            "1.5s",
            "99999999999999999999999d",
        ] {
            assert!(duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(rate("2/s").unwrap(), (2, Duration::from_secs(1)));
        assert_eq!(rate("120/m").unwrap(), (120, Duration::from_secs(60)));
        assert_eq!(rate("1/500ms").unwrap(), (1, Duration::from_millis(500)));
        assert_eq!(rate("100/15m").unwrap(), (100, Duration::from_secs(900)));
        for bad in [
            "0/s",
            "2/fortnight",
            "2 per s",
            "/s",
            "2/",
            "99999999999999999999/s",
            "-1/s",
            "2/0s",
            "1.5/s",
            "1/213504d",
        ] {
            assert!(rate(bad).is_err(), "{bad} should be refused");
        }
        // The longest interval the pacer represents is accepted; one day more is not.
        assert!(rate("1/106751d").is_ok());
        assert!(rate("1/106752d").is_err());
    }

    #[test]
    fn templates() {
        let t = template("/users/{id}/files/{name}.json?v=2").unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Literal("/users/".into()),
                Piece::Placeholder("id".into()),
                Piece::Literal("/files/".into()),
                Piece::Placeholder("name".into()),
                Piece::Literal(".json".into()),
            ]
        );
        assert_eq!(t.static_query.as_deref(), Some("v=2"));
        for bad in [
            "/a/{id", "/a/id}", "/a/{}", "/a/{1x}", "/a/{a-b}", "/a#frag", "/a?x={y}",
        ] {
            assert!(template(bad).is_err(), "{bad} should be refused");
        }
    }
}
