//! The static description of one stitch, emitted by the macro as a `static`: method, URL template
//! (already split into pieces), static headers, `pick` path, timeout and argument roles. The
//! runtime never parses attribute strings; everything here was validated at compile time.

use crate::cache::CachePolicy;
use crate::resilience::circuit::CircuitPolicy;
use crate::resilience::{IdempotencyPolicy, RetryPolicy};
use crate::throttle::ThrottleSpec;
use serde::Serialize;
use std::borrow::Cow;
use std::time::Duration;

/// HTTP methods a stitch can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `HEAD`
    Head,
}

impl Method {
    /// The method's name, e.g. `"GET"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }

    /// Safe reads: no side effects on the server (RFC 9110 §9.2.1).
    pub const fn is_safe(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }

    pub(crate) fn to_http(self) -> http::Method {
        match self {
            Method::Get => http::Method::GET,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Patch => http::Method::PATCH,
            Method::Delete => http::Method::DELETE,
            Method::Head => http::Method::HEAD,
        }
    }
}

/// Where an argument goes in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "role", content = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// A path placeholder of the same name.
    Path,
    /// A query parameter (or, for a struct, one parameter per field) under this key.
    Query(&'static str),
    /// The JSON body.
    JsonBody,
    /// The form-encoded body.
    FormBody,
    /// A request header of this name.
    Header(&'static str),
    /// A query parameter marked `secret` (`#[query(secret)]`): redacted wherever it would be shown
    /// or stored, and folded into the principal as a keyed hash.
    SecretQuery(&'static str),
    /// A header marked `secret` (`#[header("name", secret)]`): likewise.
    SecretHeader(&'static str),
}

/// JSON Schemas of a stitch's arguments and output, for those types that implement
/// `schemars::JsonSchema`.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    /// One per argument, in declaration order.
    pub arguments: Vec<Option<serde_json::Value>>,
    /// The output type's schema.
    pub output: Option<serde_json::Value>,
}

/// A stitch's static descriptor. Obtain one from a generated client (`AcmeClient::USER` for the
/// method `user`, `AcmeClient::ENDPOINTS` for all) or a free stitch (`my_fn::ENDPOINT`), then
/// [`describe`](Endpoint::describe) it or pass it to [`Runtime::invalidate_stitch`](crate::Runtime::invalidate_stitch).
///
/// ```
/// #[stitch::seam(base_url = "https://api.example.com")]
/// trait Acme {
///     #[stitch(get, path = "/users/{id}", cache = "5m")]
///     async fn user(&self, id: u64) -> stitch::Result<String>;
/// }
///
/// # fn main() {
/// let user = AcmeClient::USER;
/// assert_eq!(user.method(), stitch::Method::Get);
/// assert_eq!(user.template(), "/users/{id}");
/// println!("{}", stitch::describe_table(AcmeClient::ENDPOINTS));
/// # }
/// ```
///
/// A descriptor is its stitch's identity: the runtime keeps per-stitch state (the in-process
/// cache, throttle pools) under its address. Generated descriptors are `static`s, so that address
/// is fixed and unique; the type is neither `Clone` nor `Copy`, so no copy can stand in for it.
pub struct Endpoint {
    pub(crate) name: &'static str,
    pub(crate) method: Method,
    pub(crate) template: &'static str,
    /// The template's literal text around its placeholders: `"/users/{id}/posts"` is
    /// `["/users/", "/posts"]`, an argument standing between each two pieces.
    pub(crate) pieces: &'static [&'static str],
    pub(crate) absolute: bool,
    pub(crate) base_url: Option<&'static str>,
    pub(crate) static_query: Option<&'static str>,
    pub(crate) headers: &'static [(&'static str, &'static str)],
    pub(crate) pick: &'static [&'static str],
    pub(crate) timeout: Option<Duration>,
    pub(crate) arguments: &'static [(&'static str, Role)],
    pub(crate) schemas: fn() -> SchemaSet,
    pub(crate) cache: Option<CachePolicy>,
    pub(crate) sensitive: bool,
    pub(crate) throttles: &'static [ThrottleSpec],
    pub(crate) delegate: Option<&'static [u16]>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) each: Option<Duration>,
    pub(crate) circuit: Option<CircuitPolicy>,
    pub(crate) idempotency: Option<IdempotencyPolicy>,
    /// The auth strategy named by `auth = "..."` (the method's, else the seam's): resolved against
    /// `Runtime::builder().auth_strategy(..)`; `"none"` opts out of the runtime's `auth` provider.
    pub(crate) auth: Option<&'static str>,
}

/// Written by hand: a template, base URL or static header may fix a credential, so credential
/// header values show as `REDACTED`, and templates and base URLs lose their userinfo and the
/// values of credential query keys.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::http::redact;
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|&(name, value)| {
                let shown = if crate::auth::is_credential_header(name) {
                    redact::REDACTED
                } else {
                    value
                };
                (name, shown)
            })
            .collect();
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("template", &redact::template(self.template))
            .field("absolute", &self.absolute)
            .field("base_url", &self.base_url.map(redact::text))
            .field(
                "static_query",
                &self
                    .static_query
                    .map(|q| redact::template(&format!("?{q}"))[1..].to_owned()),
            )
            .field("headers", &headers)
            .field("pick", &self.pick)
            .field("timeout", &self.timeout)
            .field("arguments", &self.arguments)
            .field("cache", &self.cache)
            .field("sensitive", &self.sensitive)
            .field("throttles", &self.throttles)
            .field("delegate", &self.delegate)
            .field("retry", &self.retry)
            .field("each", &self.each)
            .field("circuit", &self.circuit)
            .field("idempotency", &self.idempotency)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

#[doc(hidden)]
impl Endpoint {
    /// `name` and `template` as written; `pieces` the template's literal text around its
    /// placeholders.
    pub const fn get(
        name: &'static str,
        template: &'static str,
        pieces: &'static [&'static str],
    ) -> Self {
        Self::new(name, Method::Get, template, pieces)
    }
    pub const fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    pub const fn new(
        name: &'static str,
        method: Method,
        template: &'static str,
        pieces: &'static [&'static str],
    ) -> Self {
        Endpoint {
            name,
            method,
            template,
            pieces,
            absolute: false,
            base_url: None,
            static_query: None,
            headers: &[],
            pick: &[],
            timeout: None,
            arguments: &[],
            schemas: SchemaSet::default,
            cache: None,
            sensitive: false,
            throttles: &[],
            delegate: None,
            retry: None,
            each: None,
            circuit: None,
            idempotency: None,
            auth: None,
        }
    }
    pub const fn absolute(mut self) -> Self {
        self.absolute = true;
        self
    }
    pub const fn base_url(mut self, url: &'static str) -> Self {
        self.base_url = Some(url);
        self
    }
    pub const fn static_query(mut self, query: &'static str) -> Self {
        self.static_query = Some(query);
        self
    }
    pub const fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }
    pub const fn pick(mut self, pick: &'static [&'static str]) -> Self {
        self.pick = pick;
        self
    }
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub const fn arguments(mut self, arguments: &'static [(&'static str, Role)]) -> Self {
        self.arguments = arguments;
        self
    }
    pub const fn schemas(mut self, schemas: fn() -> SchemaSet) -> Self {
        self.schemas = schemas;
        self
    }
    pub const fn cache(mut self, policy: CachePolicy) -> Self {
        self.cache = Some(policy);
        self
    }
    pub const fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    pub const fn throttles(mut self, throttles: &'static [ThrottleSpec]) -> Self {
        self.throttles = throttles;
        self
    }
    pub const fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
    pub const fn each(mut self, each: Duration) -> Self {
        self.each = Some(each);
        self
    }
    pub const fn circuit(mut self, policy: CircuitPolicy) -> Self {
        self.circuit = Some(policy);
        self
    }
    pub const fn idempotency(mut self, policy: IdempotencyPolicy) -> Self {
        self.idempotency = Some(policy);
        self
    }
    pub const fn delegate(mut self, statuses: &'static [u16]) -> Self {
        self.delegate = Some(statuses);
        self
    }
    /// `auth = "name"`: the registered strategy this stitch authenticates with (`"none"`: none).
    pub const fn auth(mut self, strategy: &'static str) -> Self {
        self.auth = Some(strategy);
        self
    }
}

impl Endpoint {
    /// The descriptor's identity: its address (see the type's docs for why it is stable).
    pub(crate) fn id(&self) -> usize {
        self as *const Endpoint as usize
    }

    /// The stitch's full name: `module::path::Trait::method` or `module::path::function`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The HTTP method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The path or URL template as written, e.g. `/users/{id}`.
    pub fn template(&self) -> &'static str {
        self.template
    }

    /// The auth strategy the stitch declares (`auth = "name"`; `"none"` when it opted out), or
    /// `None` when it declares none (the runtime's `auth` provider, if any, applies).
    pub fn auth_strategy(&self) -> Option<&'static str> {
        self.auth
    }

    /// The throttles the stitch acquires on every attempt (the seam's first, then its own).
    pub fn throttle_specs(&self) -> &'static [ThrottleSpec] {
        self.throttles
    }

    /// The cache declaration, if the stitch is cached.
    pub fn cache_policy(&self) -> Option<&CachePolicy> {
        self.cache.as_ref()
    }

    /// A serializable description: name, method, template, declared policies and the JSON
    /// Schemas of arguments and output where the types implement `schemars::JsonSchema`.
    pub fn describe(&self) -> Operation {
        let schemas = (self.schemas)();
        let mut policies = Vec::new();
        if let Some(t) = self.timeout {
            policies.push(Policy {
                name: "timeout",
                value: format!("{}ms", t.as_millis()),
            });
        }
        if let Some(c) = &self.cache {
            let mut value = format!(
                "ttl={}ms scope={:?} max_entries={}",
                c.ttl.as_millis(),
                c.scope,
                c.max_entries
            );
            if !c.vary.is_empty() {
                value.push_str(&format!(" vary={}", c.vary.join(",")));
            }
            if !c.coalesce {
                value.push_str(" coalesce=false");
            }
            if c.shared_acknowledged {
                value.push_str(" same_for_every_principal");
            }
            policies.push(Policy {
                name: "cache",
                value,
            });
        }
        for t in self.throttles {
            let mut value = String::new();
            if let Some(r) = t.rate {
                value.push_str(&format!("rate={r} "));
            }
            if let Some(c) = t.concurrency {
                value.push_str(&format!("concurrency={c} "));
            }
            if t.burst > 0 {
                value.push_str(&format!("burst={} ", t.burst));
            }
            if let Some(w) = t.max_wait {
                value.push_str(&format!("max_wait={}ms ", w.as_millis()));
            }
            value.push_str(&format!("pool={:?}", t.pool));
            if t.local {
                value.push_str(" local");
            }
            policies.push(Policy {
                name: "throttle",
                value,
            });
        }
        if let Some(e) = self.each {
            policies.push(Policy {
                name: "timeout.each",
                value: format!("{}ms", e.as_millis()),
            });
        }
        if let Some(r) = &self.retry {
            policies.push(Policy {
                name: "retry",
                value: format!(
                    "attempts={} on={:?} backoff={:?} base={}ms max={}ms{}",
                    r.attempts,
                    r.on,
                    r.backoff,
                    r.base.as_millis(),
                    r.max.as_millis(),
                    if r.respect_retry_after {
                        ""
                    } else {
                        " respect_retry_after=false"
                    }
                ),
            });
        }
        if let Some(c) = &self.circuit {
            policies.push(Policy {
                name: "circuit",
                value: format!(
                    "failures={} cooldown={}ms{}",
                    c.failures,
                    c.cooldown.as_millis(),
                    if c.local { " local" } else { "" }
                ),
            });
        }
        if let Some(i) = &self.idempotency {
            policies.push(Policy {
                name: "idempotency",
                value: i.header.to_owned(),
            });
        }
        if let Some(d) = self.delegate {
            policies.push(Policy {
                name: "throttle",
                value: format!("delegate on {d:?}"),
            });
        }
        if self.sensitive {
            policies.push(Policy {
                name: "sensitive",
                value: "true".into(),
            });
        }
        if !self.pick.is_empty() {
            policies.push(Policy {
                name: "pick",
                value: self.pick.join("."),
            });
        }
        Operation {
            name: self.name,
            method: self.method,
            // Shown redacted: a template or base URL may fix a credential.
            template: crate::http::redact::template(self.template),
            base_url: self.base_url.map(|base| {
                let shown = crate::http::redact::text(base);
                if shown == base {
                    Cow::Borrowed(base)
                } else {
                    Cow::Owned(shown)
                }
            }),
            headers: self.headers.iter().map(|(n, _)| *n).collect(),
            arguments: self
                .arguments
                .iter()
                .enumerate()
                .map(|(i, (name, role))| ArgumentDescription {
                    name,
                    role: *role,
                    schema: schemas.arguments.get(i).cloned().flatten(),
                })
                .collect(),
            output: schemas.output,
            policies,
        }
    }
}

/// What [`Endpoint::describe`] returns: a stitch as data, for tools and docs.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Operation {
    /// Full name of the stitch.
    pub name: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Path or URL template, with credential query values and userinfo redacted.
    pub template: Cow<'static, str>,
    /// The declared base URL, if any (the runtime may override it), userinfo removed.
    pub base_url: Option<Cow<'static, str>>,
    /// Names of static headers (values are not described: they may be secrets).
    pub headers: Vec<&'static str>,
    /// Arguments in declaration order.
    pub arguments: Vec<ArgumentDescription>,
    /// JSON Schema of the output type, if it implements `JsonSchema`.
    pub output: Option<serde_json::Value>,
    /// Declared policies such as `timeout` and `pick`.
    pub policies: Vec<Policy>,
}

/// One argument of an [`Operation`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ArgumentDescription {
    /// The argument's name.
    pub name: &'static str,
    /// Where it goes in the request.
    pub role: Role,
    /// Its JSON Schema, if its type implements `JsonSchema`.
    pub schema: Option<serde_json::Value>,
}

/// A declared policy of an [`Operation`], e.g. `timeout = 5000ms`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Policy {
    /// The policy's key.
    pub name: &'static str,
    /// Its value, normalized.
    pub value: String,
}
