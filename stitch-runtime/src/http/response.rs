//! Response → output value. The decoder is chosen by the macro from the written return type:
//! JSON for any `T: DeserializeOwned`, text for `String`, raw bytes for `Bytes`, nothing for `()`,
//! and [`Response<T>`] for status and headers alongside `T`.
//!
//! `pick` walks into the JSON without building an intermediate `Value`: keys on the way are
//! skipped with `IgnoredAny`, and decode errors report the full path including the picked prefix.

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use std::fmt;
use std::marker::PhantomData;

/// A received 2xx response, body fully read.
#[doc(hidden)]
pub struct RawResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The final URL, redacted ([`crate::http::redact::url`]): it is shown by `Response::url`
    /// and kept in store records.
    pub(crate) url: url::Url,
    pub(crate) body: Bytes,
    /// The secrets the request sent, to redact from a decode error (never stored).
    pub(crate) sent: crate::http::redact::Sent,
}

/// Turns a [`RawResponse`] into a stitch's output.
#[doc(hidden)]
pub trait Decode: 'static {
    /// The value the stitch returns.
    type Output: Send + 'static;
    /// Decodes the response.
    fn decode(endpoint: &'static Endpoint, raw: RawResponse) -> Result<Self::Output>;
}

/// JSON into `T`, after `pick`.
#[doc(hidden)]
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T: DeserializeOwned + Send + 'static> Decode for Json<T> {
    type Output = T;
    fn decode(endpoint: &'static Endpoint, raw: RawResponse) -> Result<T> {
        if let Some(ct) = raw.headers.get(http::header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !is_json(ct) {
                return Err(Error::UnexpectedContentType {
                    stitch: endpoint.name,
                    content_type: ct.chars().take(100).collect(),
                });
            }
        }
        decode_json(endpoint, &raw.body)
    }
}

/// `application/json`, `text/json` and `+json` types (`application/problem+json`, ...).
fn is_json(content_type: &str) -> bool {
    // Compared without allocating: this runs on every JSON response.
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .as_bytes();
    let suffix = b"+json";
    essence.eq_ignore_ascii_case(b"application/json")
        || essence.eq_ignore_ascii_case(b"text/json")
        || (essence.len() > suffix.len()
            && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
}

#[cfg(test)]
mod content_type_tests {
    #[test]
    fn json_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "text/json",
            "application/problem+json",
        ] {
            assert!(super::is_json(ok), "{ok}");
        }
        for no in [
            "text/html",
            "application/jsonx",
            "+json",
            "",
            "application/octet-stream",
        ] {
            assert!(!super::is_json(no), "{no}");
        }
    }
}

pub(crate) fn decode_json<T: DeserializeOwned>(
    endpoint: &'static Endpoint,
    body: &[u8],
) -> Result<T> {
    let seed = || Pick::<T> {
        path: endpoint.pick,
        marker: PhantomData,
    };
    // The fast path tracks no path; only a failure pays for decoding again to name where.
    let mut de = serde_json::Deserializer::from_slice(body);
    match seed()
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
    {
        Ok(v) => return Ok(v),
        // Malformed JSON: the error already says where (line and column), and a second pass over
        // a hostile body would only double the cost. Only a shape mismatch in valid JSON is
        // decoded once more, to name the field.
        Err(e) if e.classify() != serde_json::error::Category::Data => {
            return Err(Error::Decode {
                stitch: endpoint.name,
                path: ".".into(),
                source: std::sync::Arc::new(e),
            })
        }
        Err(_) => {}
    }
    let mut track = serde_path_to_error::Track::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = seed()
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|v| de.end().map(|()| v));
    match result {
        Ok(v) => Ok(v),
        Err(e) => Err(Error::Decode {
            stitch: endpoint.name,
            path: track.path().to_string(),
            source: std::sync::Arc::new(e),
        }),
    }
}

/// The body as UTF-8 text.
#[doc(hidden)]
pub struct Text;

impl Decode for Text {
    type Output = String;
    fn decode(endpoint: &'static Endpoint, raw: RawResponse) -> Result<String> {
        String::from_utf8(raw.body.into()).map_err(|e| Error::Decode {
            stitch: endpoint.name,
            path: ".".into(),
            source: std::sync::Arc::new(e),
        })
    }
}

/// The body's bytes, untouched.
#[doc(hidden)]
pub struct RawBytes;

impl Decode for RawBytes {
    type Output = Bytes;
    fn decode(_: &'static Endpoint, raw: RawResponse) -> Result<Bytes> {
        Ok(raw.body)
    }
}

/// No output: the body is ignored.
#[doc(hidden)]
pub struct Unit;

impl Decode for Unit {
    type Output = ();
    fn decode(_: &'static Endpoint, _: RawResponse) -> Result<()> {
        Ok(())
    }
}

/// [`Response<T>`] around an inner decoder.
#[doc(hidden)]
pub struct WithMeta<D>(PhantomData<fn() -> D>);

impl<D: Decode> Decode for WithMeta<D> {
    type Output = Response<D::Output>;
    fn decode(endpoint: &'static Endpoint, raw: RawResponse) -> Result<Self::Output> {
        let status = raw.status;
        let headers = raw.headers.clone();
        let url = raw.url.clone();
        let value = D::decode(endpoint, raw)?;
        Ok(Response {
            status,
            headers,
            url,
            value,
        })
    }
}

/// A decoded value with the response's status, headers and final URL. Return
/// `stitch::Result<stitch::Response<T>>` from a stitch to get it.
///
/// ```no_run
/// #[stitch::seam(base_url = "https://api.example.com")]
/// trait Acme {
///     #[stitch(get, path = "/users")]
///     async fn users(&self) -> stitch::Result<stitch::Response<Vec<String>>>;
/// }
///
/// # async fn run(acme: AcmeClient) -> stitch::Result<()> {
/// let page = acme.users().await?;
/// let total = page.headers().get("x-total-count").cloned();
/// println!("{} of {total:?} from {}", page.value().len(), page.url());
/// let users: Vec<String> = page.into_value();
/// # let _ = users;
/// # Ok(()) }
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct Response<T> {
    status: StatusCode,
    headers: HeaderMap,
    url: url::Url,
    value: T,
}

impl<T> Response<T> {
    /// The HTTP status (always 2xx: other statuses are errors).
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// The final URL (after redirects), without userinfo and with secret query values (a
    /// credential key such as `api_key`, or a `#[query(secret)]` argument) shown as `REDACTED`.
    pub fn url(&self) -> &url::Url {
        &self.url
    }
    /// The decoded value.
    pub fn value(&self) -> &T {
        &self.value
    }
    /// The decoded value, by value.
    pub fn into_value(self) -> T {
        self.value
    }
}

/// Deserializes `T` found at `path` inside the document.
struct Pick<T> {
    path: &'static [&'static str],
    marker: PhantomData<fn() -> T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Pick<T> {
    type Value = T;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<T, D::Error> {
        match self.path.split_first() {
            None => T::deserialize(d),
            Some((key, rest)) => d.deserialize_any(PickVisitor::<T> {
                key,
                rest,
                marker: PhantomData,
            }),
        }
    }
}

struct PickVisitor<T> {
    key: &'static str,
    rest: &'static [&'static str],
    marker: PhantomData<fn() -> T>,
}

impl<'de, T: DeserializeOwned> Visitor<'de> for PickVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with key `{}` (from `pick`)", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<T, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(self.key))? {
            if matches && found.is_none() {
                found = Some(map.next_value_seed(Pick::<T> {
                    path: self.rest,
                    marker: PhantomData,
                })?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        found.ok_or_else(|| {
            de::Error::custom(format_args!("missing key `{}` (from `pick`)", self.key))
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<T, A::Error> {
        let Ok(index) = self.key.parse::<usize>() else {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        };
        for _ in 0..index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(format_args!(
                    "index {index} out of range (from `pick`)"
                )));
            }
        }
        let value = seq
            .next_element_seed(Pick::<T> {
                path: self.rest,
                marker: PhantomData,
            })?
            .ok_or_else(|| {
                de::Error::custom(format_args!("index {index} out of range (from `pick`)"))
            })?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(value)
    }
}

/// Compares a map key to the wanted one without allocating.
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<bool, E> {
        Ok(v == self.0)
    }
}
