//! The one redaction of URLs: every URL stitch shows or keeps (errors, their reqwest sources,
//! tracing events, `Response::url`, shared-store records, `Debug` of runtimes and clients) passes
//! through [`url`] first.
//!
//! Invariant: a redacted URL has no userinfo, and the value of every secret query pair — a
//! well-known credential key ([`stitch_shared::CREDENTIAL_QUERY_KEYS`]) or a key the call marked
//! secret (`#[query(secret)]`) — is replaced by `REDACTED`. Other pairs are left as they were sent.

use stitch_shared::is_credential_query_key; // not via `auth`, which builds on `http`

/// What replaces a secret value.
pub(crate) const REDACTED: &str = "REDACTED";

/// Query keys a call marked secret beyond the well-known credential keys (empty — and free to
/// clone — unless the call has a `#[query(secret)]` argument).
#[derive(Clone, Default, Debug)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub(crate) fn add(&mut self, key: &str) {
        if !is_credential_query_key(key) && !self.0.iter().any(|k| k == key) {
            self.0.push(key.to_owned());
        }
    }

    fn is_secret(&self, key: &str) -> bool {
        is_credential_query_key(key) || self.0.iter().any(|k| k == key)
    }
}

/// `url` without userinfo and with secret query values replaced by `REDACTED`. A URL with
/// neither is returned as it is (one clone, no re-encoding).
pub(crate) fn url(url: &url::Url, secrets: &Secrets) -> url::Url {
    let mut out = url.clone();
    if out.has_authority() && (!out.username().is_empty() || out.password().is_some()) {
        // Setting these can only fail on URLs that cannot have userinfo, which have none.
        let _ = out.set_username("");
        let _ = out.set_password(None);
    }
    if let Some(redacted) = out.query().and_then(|query| redact_query(query, secrets)) {
        out.set_query(Some(&redacted));
    }
    out
}

/// `query` with the value of every secret pair replaced by `REDACTED`, or `None` when no pair is
/// secret. Works on the text (a credential query pair is on every request of a query-key
/// strategy): a key is decoded (`+`, `%XX`) only to be compared, and every other byte stays as it
/// was sent.
fn redact_query(query: &str, secrets: &Secrets) -> Option<String> {
    let mut out: Option<String> = None;
    let mut kept = 0; // `query[..kept]` is in `out` already
    let mut at = 0;
    for pair in query.split('&') {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        let secret = if key.bytes().any(|b| b == b'%' || b == b'+') {
            url::form_urlencoded::parse(key.as_bytes())
                .next()
                .is_some_and(|(k, _)| secrets.is_secret(&k))
        } else {
            secrets.is_secret(key)
        };
        if secret {
            let text = out.get_or_insert_with(|| String::with_capacity(query.len()));
            text.push_str(&query[kept..at + key.len()]);
            text.push('=');
            text.push_str(REDACTED);
            kept = at + pair.len();
        }
        at += pair.len() + 1;
    }
    let mut text = out?;
    text.push_str(&query[kept..]);
    Some(text)
}

/// A URL given as text (a base URL, for `Debug`): redacted when it parses; otherwise only its
/// scheme is shown, since an unparsable text cannot be checked for secrets.
pub(crate) fn text(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(parsed) => {
            let redacted = url(&parsed, &Secrets::default());
            // Keep the text as written when nothing was removed (`Url` adds a trailing `/`).
            if redacted == parsed {
                text.to_owned()
            } else {
                redacted.into()
            }
        }
        Err(_) => format!("<unparsable URL: {REDACTED}>"),
    }
}

/// The secret values one request carried, in the forms an upstream may quote them back in an
/// error (decoded and percent-encoded): secret query values and userinfo of the `sent` URL, and
/// the credential `headers` (sensitive, or credential-named). Only built for a failed call.
pub(crate) fn sent_values(
    sent: Option<&url::Url>,
    secrets: &Secrets,
    headers: &[http::HeaderValue],
) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    let mut add = |value: &str| {
        if !value.is_empty() && !values.iter().any(|v| v == value) {
            values.push(value.to_owned());
        }
    };
    if let Some(sent) = sent {
        for (key, value) in sent.query_pairs() {
            if secrets.is_secret(&key) {
                add(&value);
                add(&url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>());
            }
        }
        add(sent.username());
        if let Some(password) = sent.password() {
            add(password);
            add(&percent_encoding::percent_decode_str(password).decode_utf8_lossy());
        }
    }
    for header in headers {
        add(&String::from_utf8_lossy(header.as_bytes()));
        // `Bearer <token>`, `Basic <credentials>`: the credential alone may be quoted too.
        if let Some((_, credential)) = header.to_str().ok().and_then(|h| h.split_once(' ')) {
            add(credential.trim());
        }
    }
    // Longest first, so a value containing another is replaced whole.
    values.sort_unstable_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

/// `text` with every occurrence of `values` (from [`sent_values`]) replaced by `REDACTED`.
pub(crate) fn echoed<'t>(text: &'t str, values: &[String]) -> std::borrow::Cow<'t, str> {
    let mut out = std::borrow::Cow::Borrowed(text);
    for value in values {
        if out.contains(value.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(value.as_str(), REDACTED));
        }
    }
    out
}

/// An error response's headers as [`crate::Error::Status`] keeps them: every value quoting a
/// secret this request `sent` has it replaced by `REDACTED`, cookies the upstream sets keep only
/// their names and attributes (a session cookie is a credential), and a `Location` (a redirect
/// to another origin is not followed; its target is often a pre-signed URL) is shown like every
/// URL, resolved against the response's `url`.
pub(crate) fn error_headers(
    headers: &mut http::HeaderMap,
    url: &url::Url,
    secrets: &Secrets,
    sent: &[String],
) {
    use http::header::{CONTENT_LOCATION, LOCATION, SET_COOKIE};
    for (name, value) in headers.iter_mut() {
        let text = String::from_utf8_lossy(value.as_bytes());
        let shown = if name == SET_COOKIE {
            // `name=value; Path=/; HttpOnly` -> `name=REDACTED; Path=/; HttpOnly`
            let (pair, attributes) = text.split_once(';').unwrap_or((&text, ""));
            let cookie = pair.split_once('=').map_or(pair, |(n, _)| n);
            let separator = if attributes.is_empty() { "" } else { ";" };
            Some(format!("{cookie}={REDACTED}{separator}{attributes}"))
        } else if name == LOCATION || name == CONTENT_LOCATION {
            url.join(&text).ok().and_then(|target| {
                let shown = self::url(&target, secrets);
                (shown != target).then(|| shown.to_string())
            })
        } else {
            None
        };
        let shown = match shown {
            Some(shown) => echoed(&shown, sent).into_owned(),
            None => match echoed(&text, sent) {
                std::borrow::Cow::Owned(shown) => shown,
                std::borrow::Cow::Borrowed(_) => continue,
            },
        };
        *value =
            http::HeaderValue::from_str(&shown).unwrap_or(http::HeaderValue::from_static(REDACTED));
    }
}

/// An error body's kept prefix, lossily UTF-8, with every secret this request `sent` replaced by
/// `REDACTED` — also the start of one cut off where a `truncated` prefix ends (from 4 bytes on:
/// shorter overlaps are too likely to be ordinary text).
pub(crate) fn error_body(prefix: &[u8], truncated: bool, sent: &[String]) -> String {
    let text = String::from_utf8_lossy(prefix);
    let mut body = echoed(&text, sent).into_owned();
    if truncated {
        let cut = sent
            .iter()
            .flat_map(|value| (4..value.len()).rev().map(move |n| &value.as_bytes()[..n]))
            .filter(|start| body.as_bytes().ends_with(start))
            .map(<[u8]>::len)
            .max();
        if let Some(n) = cut {
            // `ends_with` on bytes of a `str` value: the cut is at a character boundary unless
            // the value itself was cut mid-character; back off to one.
            let mut at = body.len() - n;
            while !body.is_char_boundary(at) {
                at -= 1;
            }
            body.truncate(at);
            body.push_str(REDACTED);
        }
    }
    body
}

/// What a successful request sent that is secret, kept with its response so that a body quoting
/// it back and then failing to decode (serde's messages quote the value they reject) cannot
/// carry it into an [`Error::Decode`](crate::Error::Decode). Empty for a call without secrets;
/// the values are only worked out for a failed decode.
#[derive(Default)]
pub(crate) struct Sent {
    secrets: Secrets,
    /// The URL as sent, when it differs from the redacted one (secret query values, userinfo).
    url: Option<url::Url>,
    headers: Vec<http::HeaderValue>,
}

impl Sent {
    pub(crate) fn new(
        secrets: Secrets,
        url: Option<url::Url>,
        headers: Vec<http::HeaderValue>,
    ) -> Self {
        Sent {
            secrets,
            url,
            headers,
        }
    }

    /// The secret values this request sent, in the forms an upstream may quote them back in
    /// (empty, at no cost, for a request without secrets).
    pub(crate) fn values(&self) -> Vec<String> {
        if self.url.is_none() && self.headers.is_empty() {
            return Vec::new();
        }
        sent_values(self.url.as_ref(), &self.secrets, &self.headers)
    }

    /// `error` with every secret this request sent redacted from a decode error's message and path.
    pub(crate) fn redact(self, error: crate::Error) -> crate::Error {
        match error {
            crate::Error::Decode {
                stitch,
                path,
                source,
            } if self.url.is_some() || !self.headers.is_empty() => {
                let values = sent_values(self.url.as_ref(), &self.secrets, &self.headers);
                let message = source.to_string();
                let (shown, shown_path) = (echoed(&message, &values), echoed(&path, &values));
                if matches!(
                    (&shown, &shown_path),
                    (std::borrow::Cow::Borrowed(_), std::borrow::Cow::Borrowed(_))
                ) {
                    return crate::Error::Decode {
                        stitch,
                        path,
                        source,
                    };
                }
                crate::Error::Decode {
                    stitch,
                    path: shown_path.into_owned(),
                    source: std::sync::Arc::new(Redacted(shown.into_owned())),
                }
            }
            other => other,
        }
    }
}

/// A decoder's message with the secrets it quoted replaced by `REDACTED`.
#[derive(Debug)]
struct Redacted(String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// A URL template as written (`/search?api_key=k&v=1`, `https://user:pw@host/x/{id}`), with the
/// value of every credential query pair replaced by `REDACTED` and userinfo removed: the form
/// every template takes when shown (spans, errors, `Debug` and `describe` of descriptors), since
/// a template may fix a credential. Borrowed, so free, when there is nothing to remove.
pub(crate) fn template(template: &str) -> std::borrow::Cow<'_, str> {
    let (path, query) = match template.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (template, None),
    };
    // Userinfo: between `://` and the last `@` before the authority ends.
    let userinfo = path.find("://").and_then(|scheme| {
        let start = scheme + 3;
        let end = path[start..].find('/').map_or(path.len(), |i| start + i);
        path[start..end]
            .rfind('@')
            .map(|at| (start, start + at + 1))
    });
    let secret = |pair: &str| {
        let key = pair.split('=').next().unwrap_or("");
        let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        is_credential_query_key(&key.replace('+', " "))
    };
    let secret_query = query.is_some_and(|q| q.split('&').any(secret));
    if userinfo.is_none() && !secret_query {
        return std::borrow::Cow::Borrowed(template);
    }
    let mut out = String::with_capacity(template.len());
    match userinfo {
        Some((start, end)) => {
            out.push_str(&path[..start]);
            out.push_str(&path[end..]);
        }
        None => out.push_str(path),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if secret(pair) => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An [`Error::Transport`](crate::Error::Transport) whose URL — in the error and in reqwest's own
/// error, whose `Display` prints it — is redacted.
pub(crate) fn transport(
    stitch: &'static str,
    fallback: &'static str,
    mut source: reqwest::Error,
    secrets: &Secrets,
) -> crate::Error {
    let shown = match source.url_mut() {
        Some(sent) => {
            *sent = url(sent, secrets);
            sent.to_string()
        }
        None => template(fallback).into_owned(),
    };
    crate::Error::Transport {
        stitch,
        url: shown,
        source: std::sync::Arc::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_values_are_removed_other_pairs_kept() {
        let mut secrets = Secrets::default();
        secrets.add("q");
        let u = url::Url::parse("https://u:p@h.test/x?page=2&api_key=k1&q=s&Token=t").unwrap();
        assert_eq!(
            url(&u, &secrets).as_str(),
            "https://h.test/x?page=2&api_key=REDACTED&q=REDACTED&Token=REDACTED"
        );
        let plain = url::Url::parse("https://h.test/x?page=2").unwrap();
        assert_eq!(url(&plain, &Secrets::default()), plain);
        assert_eq!(text("https://u:pw@h.test"), "https://h.test/");
        assert_eq!(text("https://h.test"), "https://h.test");
    }

    #[test]
    fn query_redaction_decodes_keys_and_keeps_every_other_byte() {
        let mut secrets = Secrets::default();
        secrets.add("my key");
        let cases = [
            // (query, redacted)
            ("api%5Fkey=k1&x=a%20b", Some("api%5Fkey=REDACTED&x=a%20b")),
            (
                "my+key=s&my%20key=t",
                Some("my+key=REDACTED&my%20key=REDACTED"),
            ),
            (
                "a=1&&token=a=b&token",
                Some("a=1&&token=REDACTED&token=REDACTED"),
            ),
            ("token=", Some("token=REDACTED")),
            ("page=2&q=token", None),
            ("", None),
        ];
        for (query, expected) in cases {
            let redacted = redact_query(query, &secrets);
            assert_eq!(redacted.as_deref(), expected, "{query}");
            // Read back as pairs: secret keys carry `REDACTED`, the others what was sent.
            let sent: Vec<_> = url::form_urlencoded::parse(query.as_bytes()).collect();
            let shown: Vec<_> =
                url::form_urlencoded::parse(redacted.as_deref().unwrap_or(query).as_bytes())
                    .collect();
            assert_eq!(sent.len(), shown.len(), "{query}");
            for ((k, v), (k2, v2)) in sent.iter().zip(&shown) {
                assert_eq!(k, k2);
                if secrets.is_secret(k) {
                    assert_eq!(v2, REDACTED, "{query}");
                } else {
                    assert_eq!(v, v2, "{query}");
                }
            }
        }
    }

    #[test]
    fn templates_lose_userinfo_and_credential_values_only() {
        assert!(matches!(
            template("/users/{id}?page=1"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            template("/s?Api_Key=k1&v=1&x%2Damz%2Dsignature=s&sig"),
            "/s?Api_Key=REDACTED&v=1&x%2Damz%2Dsignature=REDACTED&sig"
        );
        assert_eq!(
            template("https://u:p@w@h.test/{id}/a@b?token=t"),
            "https://h.test/{id}/a@b?token=REDACTED"
        );
    }
}
