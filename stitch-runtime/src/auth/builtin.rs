//! The fixed-credential strategies: [`Bearer`], [`ApiKey`] and [`Basic`]. Their credential never
//! changes by itself (a [`Secret::from_fn`] source is read on every request), so they are always
//! [`Credential`] 0 and have nothing to refresh; their principal is a keyed hash of the credential.

use super::strategy::{AuthContext, AuthRequest, Credential, Identity, Strategy};
use super::{AuthFuture, Secret};
use base64::Engine as _;
use http::{HeaderName, HeaderValue};

/// A fixed credential's header value, built once: `None` when the secret is read from a source on
/// every request, or when the value is not a valid header value (then every request reports
/// that, as a dynamic one would).
fn prepared(secret: &Secret, value: impl FnOnce(&str) -> String) -> Option<HeaderValue> {
    let mut header = crate::http::request::header_value(&value(secret.fixed()?))?;
    header.set_sensitive(true);
    Some(header)
}

/// `authorization: Bearer <token>`.
///
/// ```
/// use stitch::auth::{Bearer, Secret};
///
/// # fn main() -> stitch::Result<()> {
/// let runtime = stitch::Runtime::builder()
///     .auth_strategy("acme", Bearer::new(Secret::new("t-123")))
///     .build()?;
/// # let _ = runtime;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Bearer {
    token: Secret,
    /// `Bearer <token>` for a fixed token (marked sensitive, so `Debug` does not show it).
    header: Option<HeaderValue>,
}

impl Bearer {
    /// Sends `token` as a bearer token.
    pub fn new(token: impl Into<Secret>) -> Self {
        let token = token.into();
        let header = prepared(&token, |token| format!("Bearer {token}"));
        Bearer { token, header }
    }
}

impl Strategy for Bearer {
    fn refreshes(&self) -> bool {
        // A fixed credential: a rejection is final.
        false
    }

    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        _cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential> {
        let outcome = match &self.header {
            Some(value) => {
                request.set_prepared_credential(http::header::AUTHORIZATION, value.clone());
                Ok(Credential(0))
            }
            None => {
                let token = self.token.expose();
                request
                    .set_credential_header("authorization", &format!("Bearer {token}"))
                    .map(|()| Credential(0))
            }
        };
        Box::pin(std::future::ready(outcome))
    }

    fn identity(&self) -> Identity {
        Identity::Credential(self.token.clone())
    }
}

/// Where an [`ApiKey`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Header,
    Query,
    Cookie,
}

/// An API key in a header, a query parameter or a cookie, under a name of your choice.
///
/// ```
/// use stitch::auth::{ApiKey, Secret};
///
/// let in_header = ApiKey::header("x-api-key", Secret::new("k-1"));
/// let in_query = ApiKey::query("api_key", Secret::new("k-1")); // redacted wherever shown
/// let in_cookie = ApiKey::cookie("session", Secret::new("k-1"));
/// # let _ = (in_header, in_query, in_cookie);
/// ```
#[derive(Debug, Clone)]
pub struct ApiKey {
    place: Place,
    name: String,
    key: Secret,
    /// The header for a fixed key sent as a header (the value marked sensitive).
    header: Option<(HeaderName, HeaderValue)>,
}

impl ApiKey {
    /// Sends the key as header `name` (marked sensitive; any header of that name is replaced).
    pub fn header(name: impl Into<String>, key: impl Into<Secret>) -> Self {
        let (name, key) = (name.into(), key.into());
        // An invalid name is reported by every request, as for a dynamic key.
        let header = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(prepared(&key, str::to_owned));
        ApiKey {
            place: Place::Header,
            name,
            key,
            header,
        }
    }

    /// Sends the key as query parameter `name`, whose value is then redacted in every URL
    /// stitch shows or keeps (errors, traces, `Response::url`, store records).
    pub fn query(name: impl Into<String>, key: impl Into<Secret>) -> Self {
        ApiKey {
            place: Place::Query,
            name: name.into(),
            key: key.into(),
            header: None,
        }
    }

    /// Sends the key as cookie `name` (added to any `cookie` header the request already has).
    pub fn cookie(name: impl Into<String>, key: impl Into<Secret>) -> Self {
        ApiKey {
            place: Place::Cookie,
            name: name.into(),
            key: key.into(),
            header: None,
        }
    }
}

impl Strategy for ApiKey {
    fn refreshes(&self) -> bool {
        // A fixed credential: a rejection is final.
        false
    }

    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        _cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential> {
        if let Some((name, value)) = &self.header {
            request.set_prepared_credential(name.clone(), value.clone());
            return Box::pin(std::future::ready(Ok(Credential(0))));
        }
        let key = self.key.expose();
        let outcome = match self.place {
            Place::Header => request.set_credential_header(&self.name, &key),
            Place::Query => {
                request.add_credential_query(&self.name, &key);
                Ok(())
            }
            Place::Cookie => {
                let pair = format!("{}={key}", self.name);
                let cookie = match request
                    .headers()
                    .get(http::header::COOKIE)
                    .and_then(|v| v.to_str().ok())
                {
                    Some(existing) if !existing.is_empty() => format!("{existing}; {pair}"),
                    _ => pair,
                };
                request.set_credential_header("cookie", &cookie)
            }
        };
        Box::pin(std::future::ready(outcome.map(|()| Credential(0))))
    }

    fn identity(&self) -> Identity {
        // The place and name are part of the credential: the same key sent as two different
        // parameters may be two accounts.
        let place = match self.place {
            Place::Header => "header",
            Place::Query => "query",
            Place::Cookie => "cookie",
        };
        let key = self.key.clone();
        let tagged = format!("{place}\0{}\0", self.name);
        Identity::Credential(Secret::from_fn(move || format!("{tagged}{}", key.expose())))
    }
}

/// HTTP Basic: `authorization: Basic base64(user:password)`.
#[derive(Debug, Clone)]
pub struct Basic {
    user: String,
    password: Secret,
    /// `Basic base64(user:password)` for a fixed password (marked sensitive).
    header: Option<HeaderValue>,
}

impl Basic {
    /// Sends `user` and `password` as HTTP Basic credentials.
    pub fn new(user: impl Into<String>, password: impl Into<Secret>) -> Self {
        let (user, password) = (user.into(), password.into());
        let header = prepared(&password, |password| basic_value(&user, password));
        Basic {
            user,
            password,
            header,
        }
    }
}

pub(crate) fn basic_value(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

impl Strategy for Basic {
    fn refreshes(&self) -> bool {
        // A fixed credential: a rejection is final.
        false
    }

    fn apply<'a>(
        &'a self,
        request: &'a mut AuthRequest<'_>,
        _cx: &'a AuthContext,
    ) -> AuthFuture<'a, Credential> {
        let outcome = match &self.header {
            Some(value) => {
                request.set_prepared_credential(http::header::AUTHORIZATION, value.clone());
                Ok(Credential(0))
            }
            None => {
                let value = basic_value(&self.user, &self.password.expose());
                request
                    .set_credential_header("authorization", &value)
                    .map(|()| Credential(0))
            }
        };
        Box::pin(std::future::ready(outcome))
    }

    fn identity(&self) -> Identity {
        let (user, password) = (self.user.clone(), self.password.clone());
        Identity::Credential(Secret::from_fn(move || {
            format!("{user}\0{}", password.expose())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::strategy::AuthRequest;
    use http::HeaderMap;

    /// The headers `strategy` puts on an empty request, or its error.
    async fn applied(strategy: &dyn Strategy) -> crate::Result<HeaderMap> {
        let runtime = crate::Runtime::builder().build()?;
        let (method, mut url) = (
            http::Method::GET,
            url::Url::parse("http://x.invalid/r").unwrap(),
        );
        let (mut headers, mut secrets) =
            (HeaderMap::new(), crate::http::redact::Secrets::default());
        let mut request = AuthRequest {
            method: &method,
            url: &mut url,
            headers: &mut headers,
            body: None,
            secrets: &mut secrets,
            principal: None,
        };
        strategy.apply(&mut request, runtime.auth_context()).await?;
        Ok(headers)
    }

    #[tokio::test]
    async fn a_header_built_once_is_the_header_built_per_request_and_stays_hidden() {
        let dynamic = |value: &'static str| Secret::from_fn(move || value.to_owned());
        // (built once, read per request, header name, value sent)
        type Pair = (
            Box<dyn Strategy>,
            Box<dyn Strategy>,
            &'static str,
            &'static str,
        );
        let pairs: [Pair; 3] = [
            (
                Box::new(Bearer::new("t-1")),
                Box::new(Bearer::new(dynamic("t-1"))),
                "authorization",
                "Bearer t-1",
            ),
            (
                Box::new(ApiKey::header("X-Api-Key", "k-1")),
                Box::new(ApiKey::header("X-Api-Key", dynamic("k-1"))),
                "x-api-key",
                "k-1",
            ),
            (
                Box::new(Basic::new("ada", "pw")),
                Box::new(Basic::new("ada", dynamic("pw"))),
                "authorization",
                "Basic YWRhOnB3",
            ),
        ];
        for (fixed, per_request, name, expected) in pairs {
            for strategy in [&fixed, &per_request] {
                let headers = applied(strategy.as_ref()).await.unwrap();
                let value = &headers[name];
                assert_eq!(value, expected);
                assert!(value.is_sensitive(), "{name} is a credential");
            }
        }
        let shown = format!(
            "{:?}",
            (
                Bearer::new("t-1"),
                ApiKey::header("k", "k-1"),
                Basic::new("a", "pw")
            )
        );
        for secret in ["t-1", "k-1", "pw", "YWRhOnB3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[tokio::test]
    async fn an_invalid_fixed_credential_fails_each_request_without_showing_it() {
        for strategy in [
            Box::new(Bearer::new("t-1\nx")) as Box<dyn Strategy>,
            Box::new(ApiKey::header("x-api-key", "k-1\r\n")),
            Box::new(ApiKey::header("bad name", "k-1")),
        ] {
            let error = applied(strategy.as_ref()).await.unwrap_err().to_string();
            assert!(
                error.contains("refused") || error.contains("not a valid header name"),
                "{error}"
            );
            assert!(!error.contains("t-1") && !error.contains("k-1"), "{error}");
        }
    }
}
