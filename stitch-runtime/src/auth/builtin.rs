//! The fixed-credential strategies: [`Bearer`], [`ApiKey`] and [`Basic`]. Their credential never
//! changes by itself (a [`Secret::from_fn`] source is read on every request), so they are always
//! [`Credential`] 0 and have nothing to refresh; their principal is a keyed hash of the credential.

use super::strategy::{AuthContext, AuthRequest, Credential, Identity, Strategy};
use super::{AuthFuture, Secret};
use base64::Engine as _;

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
}

impl Bearer {
    /// Sends `token` as a bearer token.
    pub fn new(token: impl Into<Secret>) -> Self {
        Bearer {
            token: token.into(),
        }
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
        let token = self.token.expose();
        let outcome = request
            .set_credential_header("authorization", &format!("Bearer {token}"))
            .map(|()| Credential(0));
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
}

impl ApiKey {
    /// Sends the key as header `name` (marked sensitive; any header of that name is replaced).
    pub fn header(name: impl Into<String>, key: impl Into<Secret>) -> Self {
        ApiKey {
            place: Place::Header,
            name: name.into(),
            key: key.into(),
        }
    }

    /// Sends the key as query parameter `name`, whose value is then redacted in every URL
    /// stitch shows or keeps (errors, traces, `Response::url`, store records).
    pub fn query(name: impl Into<String>, key: impl Into<Secret>) -> Self {
        ApiKey {
            place: Place::Query,
            name: name.into(),
            key: key.into(),
        }
    }

    /// Sends the key as cookie `name` (added to any `cookie` header the request already has).
    pub fn cookie(name: impl Into<String>, key: impl Into<Secret>) -> Self {
        ApiKey {
            place: Place::Cookie,
            name: name.into(),
            key: key.into(),
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
}

impl Basic {
    /// Sends `user` and `password` as HTTP Basic credentials.
    pub fn new(user: impl Into<String>, password: impl Into<Secret>) -> Self {
        Basic {
            user: user.into(),
            password: password.into(),
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
        let value = basic_value(&self.user, &self.password.expose());
        let outcome = request
            .set_credential_header("authorization", &value)
            .map(|()| Credential(0));
        Box::pin(std::future::ready(outcome))
    }

    fn identity(&self) -> Identity {
        let (user, password) = (self.user.clone(), self.password.clone());
        Identity::Credential(Secret::from_fn(move || {
            format!("{user}\0{}", password.expose())
        }))
    }
}
