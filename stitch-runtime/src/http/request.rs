//! Arguments → request: percent-encoded path values, query pairs, headers and body.
//!
//! Invariants: a path value is always one encoded segment (a `/` in a value can never change the
//! route, and `.`/`..`/empty values are refused); encoding errors are kept, not panicked on, and
//! reported as [`Error::InvalidArgument`] before anything is sent.

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::http::redact::Secrets;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;
use serde_json::Value;
use stitch_shared::{is_credential_header, is_credential_query_key}; // not via `auth`, which builds on `http`

/// Everything but RFC 3986 unreserved characters is encoded in a path value.
const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a header value was refused (the call fails before anything is sent).
pub(crate) const HEADER_VALUE_RULE: &str = "a header value must be visible ASCII, spaces or tabs (no line breaks, control characters or non-ASCII text); percent-encode or base64 the value first";

/// `text` as a header value when every byte is visible ASCII, a space or a tab. `HeaderValue`
/// itself also lets bytes above 0x7F through (RFC 9110's obsolete `obs-text`), which servers
/// read as Latin-1 or reject: refused here so what is sent is what the caller wrote.
pub(crate) fn header_value(text: &str) -> Option<HeaderValue> {
    if text
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        HeaderValue::from_str(text).ok()
    } else {
        None
    }
}

/// RFC 3986 unreserved: the bytes [`PATH_VALUE`] leaves as they are.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A request being filled by a generated stitch body, one argument at a time.
#[doc(hidden)]
pub struct RequestParts {
    pub(crate) endpoint: &'static Endpoint,
    pub(crate) path: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    /// Indexes into `query` of the secret pairs (a credential key, or `#[query(secret)]`): keyed
    /// only as a keyed hash, redacted wherever shown. Empty, so free, for most calls.
    pub(crate) secret_pairs: Vec<usize>,
    /// A secret header's value is marked sensitive ([`HeaderValue::set_sensitive`]): it is keyed
    /// only as a keyed hash, and hyper never indexes it in HPACK tables.
    pub(crate) headers: Vec<(&'static str, HeaderValue)>,
    pub(crate) body: Option<(Bytes, &'static str)>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) error: Option<Error>,
    /// The principal the calling client is bound to, for auth strategies holding one credential
    /// per principal (set by the pipeline, not by generated code).
    pub(crate) principal: Option<std::sync::Arc<str>>,
}

#[doc(hidden)]
impl RequestParts {
    pub fn new(endpoint: &'static Endpoint) -> Self {
        RequestParts {
            endpoint,
            path: Vec::new(),
            query: Vec::new(),
            secret_pairs: Vec::new(),
            headers: Vec::new(),
            body: None,
            idempotency_key: None,
            error: None,
            principal: None,
        }
    }

    fn fail(&mut self, argument: &'static str, reason: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(Error::InvalidArgument {
                stitch: self.endpoint.name,
                argument,
                reason: reason.into(),
            });
        }
    }

    /// A path placeholder's value: a scalar, encoded as one segment.
    pub fn path<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) {
        match to_value(value).map(scalar) {
            Ok(Some(Some(text))) => {
                if text.is_empty() || text == "." || text == ".." {
                    self.fail(
                        name,
                        format!("{text:?} cannot be a path value: it would change the route"),
                    );
                } else if text.bytes().all(is_unreserved) {
                    // Most values need no escaping: keep the string already made. (The encoder's
                    // borrowed result does not mean "unchanged": a one-character value comes back
                    // as its static escape, e.g. `/` as `%2F`.)
                    self.path.push(text);
                } else {
                    self.path
                        .push(percent_encoding::utf8_percent_encode(&text, PATH_VALUE).to_string());
                }
            }
            Ok(Some(None)) => self.fail(name, "`None` cannot fill a path placeholder"),
            Ok(None) => self.fail(
                name,
                "a path value must be a string, number, boolean or unit enum variant",
            ),
            Err(e) => self.fail(name, e),
        }
    }

    /// A `#[query]` argument: a scalar (`None` omitted), a sequence (repeated key) or a struct or
    /// map (one pair per field, the argument's own key unused).
    pub fn query<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        self.query_pairs(key, value, false);
    }

    /// Pushes the pairs of one `#[query]` argument; each is secret when the argument is, or when
    /// its key is a well-known credential key (also for the fields of a struct or map).
    fn query_pairs<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T, secret: bool) {
        let first = self.query.len();
        self.push_query_value(key, value);
        for i in first..self.query.len() {
            if secret || is_credential_query_key(&self.query[i].0) {
                self.secret_pairs.push(i);
            }
        }
    }

    fn push_query_value<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        let value = match to_value(value) {
            Ok(v) => v,
            Err(e) => return self.fail(key, e),
        };
        match value {
            Value::Object(fields) => {
                for (field, v) in fields {
                    if let Err(e) = push_query(&mut self.query, &field, v) {
                        self.fail(key, format!("field `{field}`: {e}"));
                    }
                }
            }
            other => {
                if let Err(e) = push_query(&mut self.query, key, other) {
                    self.fail(key, e);
                }
            }
        }
    }

    /// A `#[header("name")]` argument: a scalar; `None` omits the header.
    pub fn header<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) {
        match to_value(value).map(scalar) {
            Ok(Some(Some(text))) => match header_value(&text) {
                Some(mut v) => {
                    // A credential-named header is secret whether or not it was marked.
                    if is_credential_header(name) {
                        v.set_sensitive(true);
                    }
                    self.headers.push((name, v))
                }
                None => self.fail(name, format!("{HEADER_VALUE_RULE} (nothing was sent)")),
            },
            Ok(Some(None)) => {}
            Ok(None) => self.fail(name, "a header value must be a string, number or boolean"),
            Err(e) => self.fail(name, e),
        }
    }

    /// A `#[query(secret)]` argument: like [`Self::query`], but the value is a secret (redacted
    /// wherever it would be shown or stored, folded into the principal as a keyed hash).
    pub fn secret_query<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        self.query_pairs(key, value, true);
    }

    /// A `#[header("name", secret)]` argument: like [`Self::header`], but the value is a secret.
    pub fn secret_header<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) {
        let before = self.headers.len();
        self.header(name, value);
        if let Some((_, v)) = self.headers.get_mut(before) {
            v.set_sensitive(true);
        }
    }

    /// The argument named by `idempotency(from = "...")`: the call's idempotency key.
    pub fn idempotency_key<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) {
        match to_value(value).map(scalar) {
            // Sent as a header: refused like a `#[header]` argument, before anything is sent.
            Ok(Some(Some(text))) if !text.is_empty() && header_value(&text).is_none() => {
                self.fail(name, format!("{HEADER_VALUE_RULE} (nothing was sent)"))
            }
            Ok(Some(Some(text))) if !text.is_empty() => self.idempotency_key = Some(text),
            Ok(_) => self.fail(
                name,
                "an idempotency key must be a non-empty string or number",
            ),
            Err(e) => self.fail(name, e),
        }
    }

    /// The `#[body]` argument, as JSON.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.body = Some((Bytes::from(bytes), "application/json")),
            Err(e) => self.fail("body", e.to_string()),
        }
    }

    /// The `#[body(form)]` argument, form-encoded.
    pub fn form<T: Serialize + ?Sized>(&mut self, value: &T) {
        match serde_urlencoded::to_string(value) {
            Ok(text) => self.body = Some((Bytes::from(text), "application/x-www-form-urlencoded")),
            Err(e) => self.fail("body", e.to_string()),
        }
    }
}

fn to_value<T: Serialize + ?Sized>(value: &T) -> std::result::Result<Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// `Some(Some(text))` for a scalar, `Some(None)` for null, `None` for arrays and objects.
fn scalar(value: Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::Bool(b) => Some(Some(b.to_string())),
        Value::Number(n) => Some(Some(n.to_string())),
        Value::String(s) => Some(Some(s)),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn push_query(
    out: &mut Vec<(String, String)>,
    key: &str,
    value: Value,
) -> std::result::Result<(), String> {
    match value {
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(Some(text)) => out.push((key.to_owned(), text)),
                    Some(None) => {}
                    None => return Err("nested lists or objects cannot be query values".into()),
                }
            }
            Ok(())
        }
        other => match scalar(other) {
            Some(Some(text)) => {
                out.push((key.to_owned(), text));
                Ok(())
            }
            Some(None) => Ok(()),
            None => Err("nested objects cannot be query values".into()),
        },
    }
}

/// Appends the template's literal pieces with an encoded path value between each two.
fn fill_template(out: &mut String, pieces: &[&str], values: &mut impl Iterator<Item = String>) {
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            out.push_str(&values.next().unwrap_or_default());
        }
        out.push_str(piece);
    }
}

/// A request ready to send (cheap to clone for another attempt).
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) url: url::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// The call's secret query keys, to redact any URL shown or kept ([`crate::http::redact::url`]).
    pub(crate) secrets: Secrets,
    /// See [`RequestParts::principal`].
    pub(crate) principal: Option<std::sync::Arc<str>>,
}

/// What a runtime adds to every request, passed in by the pipeline so `http` never reaches back
/// up into the runtime that owns it.
#[derive(Clone, Copy)]
pub(crate) struct RequestContext<'a> {
    /// The runtime's `base_url`, which overrides the descriptor's.
    pub(crate) base_url: Option<&'static str>,
    /// The runtime's default headers (merged first, then the stitch's, then the call's).
    pub(crate) default_headers: &'a HeaderMap,
    /// The runtime's parsed base URLs.
    pub(crate) bases: &'a Bases,
}

/// Parsed base URLs of one runtime (bases are `'static` strings from descriptors or the builder,
/// so the cache is bounded by the program).
pub(crate) type Bases = std::sync::RwLock<crate::fasthash::FastMap<&'static str, url::Url>>;

/// `base` parsed, from the runtime's cache.
fn parsed_base(
    bases: &Bases,
    base: &'static str,
) -> std::result::Result<url::Url, url::ParseError> {
    if let Some(url) = bases.read().unwrap_or_else(|e| e.into_inner()).get(base) {
        return Ok(url.clone());
    }
    let url = url::Url::parse(base)?;
    bases
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(base, url.clone());
    Ok(url)
}

impl RequestParts {
    /// Resolves the URL (base + template + query) and merges headers: the runtime's defaults, then
    /// the stitch's static headers, then the call's `#[header]` arguments.
    pub(crate) fn prepare(self, cx: RequestContext<'_>) -> Result<Prepared> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let ep = self.endpoint;
        let config = |reason: String| Error::Config {
            stitch: ep.name,
            reason,
        };
        let mut values = self.path.into_iter();
        let mut url = if ep.absolute {
            // A complete URL template: placeholders may sit anywhere, so parse the whole text.
            let mut text = String::with_capacity(128);
            fill_template(&mut text, ep.pieces, &mut values);
            if let Some(q) = ep.static_query {
                text.push('?');
                text.push_str(q);
            }
            url::Url::parse(&text).map_err(|e| {
                // The template, not the text: the text may carry secret query values.
                let template = crate::http::redact::text(ep.template);
                config(format!(
                    "`{template}` with this call's values is not a valid URL: {e}"
                ))
            })?
        } else {
            let base = cx
                .base_url
                .or(ep.base_url)
                .ok_or_else(|| {
                    config("no base URL: declare `base_url` on the seam or stitch, or set `Runtime::builder().base_url(...)`".into())
                })?;
            // The base is parsed once per runtime; a call only sets its path and query, which
            // skips parsing the scheme and host every time (most of a URL parse).
            let mut url = parsed_base(cx.bases, base).map_err(|e| {
                // Shown redacted: the text may carry userinfo.
                let base = crate::http::redact::text(base);
                config(format!("base URL `{base}` is not a valid URL: {e}"))
            })?;
            let mut path = String::with_capacity(64);
            path.push_str(url.path().trim_end_matches('/'));
            fill_template(&mut path, ep.pieces, &mut values);
            url.set_path(&path);
            url.set_query(ep.static_query);
            url
        };
        let mut secrets = Secrets::default();
        for &i in &self.secret_pairs {
            secrets.add(&self.query[i].0);
        }
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(self.query);
        }

        let mut headers = cx.default_headers.clone();
        for (name, value) in ep.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config(format!("invalid header name `{name}`")))?;
            let value = header_value(value).ok_or_else(|| {
                config(format!(
                    "the static value of header `{name}` is refused: {HEADER_VALUE_RULE} (nothing was sent)"
                ))
            })?;
            let mut value = value;
            value.set_sensitive(is_credential_header(name.as_str()));
            headers.insert(name, value);
        }
        for (name, value) in self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config(format!("invalid header name `{name}`")))?;
            headers.insert(name, value);
        }
        if let Some(policy) = &ep.idempotency {
            // One key per logical call, minted here and reused by every attempt; a header the
            // caller set (argument or static) wins.
            if !headers.contains_key(policy.header) {
                let key = self
                    .idempotency_key
                    .unwrap_or_else(crate::resilience::uuid_v4);
                let name = HeaderName::from_bytes(policy.header.as_bytes()).map_err(|_| {
                    config(format!("invalid idempotency header `{}`", policy.header))
                })?;
                let value = header_value(&key).ok_or_else(|| {
                    config(format!(
                        "the idempotency key is refused: {HEADER_VALUE_RULE} (nothing was sent)"
                    ))
                })?;
                headers.insert(name, value);
            }
        }
        let body = self.body.map(|(bytes, content_type)| {
            headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static(content_type));
            bytes
        });
        Ok(Prepared {
            url,
            headers,
            body,
            secrets,
            principal: self.principal,
        })
    }
}
