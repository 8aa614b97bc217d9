//! Cache keys, derived — never written by users — from everything that selects a response: a key
//! format version, the stitch, the method, the resolved URL (base, path values, static query and
//! query pairs), the body, the `vary` headers, the principal and the output's schema fingerprint,
//! plus the invalidation generations. Hashed with BLAKE3, so crafted inputs cannot make two keys
//! collide; every field is length-prefixed, so no two field sequences hash alike.

use crate::auth::{is_credential_header, Principal, CREDENTIAL_HEADERS};
use crate::cache::{CachePolicy, Scope};
use crate::endpoint::Endpoint;
use crate::http::request::RequestParts;
use crate::runtime::Runtime;

/// The key-format version, as the key of a keyed BLAKE3 (public: a constant key keeps BLAKE3's
/// collision resistance and saves deriving a context key on every call).
const KEY_FORMAT: &[u8; 32] = b"stitch cache key format v1 .....";

/// A derived cache key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey(pub(crate) [u8; 32]);

impl CacheKey {
    /// The key as stored in a shared store: prefixed, hex.
    pub(crate) fn store_key(&self) -> String {
        let mut s = String::with_capacity(16 + 64);
        s.push_str("stitch:c1:");
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
            s.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
        }
        s
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", &self.store_key()[10..26])
    }
}

struct Fields(blake3::Hasher);

impl Fields {
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.update(&(b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.update(&v.to_le_bytes());
        self
    }
    fn tag(&mut self, t: u8) -> &mut Self {
        self.0.update(&[t]);
        self
    }
}

/// The part of every key of one stitch that never changes in a runtime: the stitch, its method,
/// the output's fingerprint, the base URL and the template. Computed once per stitch.
pub(crate) fn static_digest(
    endpoint: &Endpoint,
    policy: &CachePolicy,
    runtime: &Runtime,
) -> [u8; 32] {
    let mut f = Fields(blake3::Hasher::new_keyed(KEY_FORMAT));
    f.str(endpoint.name)
        .str(endpoint.method.as_str())
        .u64(policy.fingerprint);
    if endpoint.absolute {
        f.tag(0);
    } else {
        f.tag(1).str(
            runtime
                .base_url_override()
                .or(endpoint.base_url)
                .unwrap_or(""),
        );
    }
    f.u64(endpoint.pieces.len() as u64);
    for piece in endpoint.pieces {
        f.str(piece);
    }
    f.tag(4).str(endpoint.static_query.unwrap_or(""));
    match policy.scope {
        Scope::Principal => f.tag(9),
        Scope::App => f.tag(13),
    };
    *f.0.finalize().as_bytes()
}

/// Derives the key of one call from the stitch's [`static_digest`] and the call's own parts.
pub(crate) fn derive(
    static_digest: &[u8; 32],
    endpoint: &Endpoint,
    policy: &CachePolicy,
    parts: &RequestParts,
    runtime: &Runtime,
    principal: Option<&Principal>,
    generations: (u64, u64),
) -> CacheKey {
    let mut f = Fields(blake3::Hasher::new_keyed(KEY_FORMAT));
    f.0.update(static_digest);
    f.u64(generations.0).u64(generations.1);
    f.u64(parts.path.len() as u64);
    for value in &parts.path {
        f.str(value);
    }
    f.u64(parts.query.len() as u64);
    for (k, v) in &parts.query {
        f.str(k).str(v);
    }
    match &parts.body {
        Some((body, content_type)) => f.tag(5).str(content_type).bytes(body),
        None => f.tag(6),
    };
    for name in policy.vary {
        match header_value(name, parts, endpoint, runtime) {
            Some(v) => f.tag(7).str(name).bytes(v),
            None => f.tag(8).str(name),
        };
    }
    if policy.scope == Scope::Principal {
        match principal {
            Some(p) => f.tag(9).bytes(&p.digest),
            None => f.tag(10),
        };
        match (runtime.auth_principal(), runtime.auth()) {
            (Some(p), _) => f.tag(14).bytes(&p.digest),
            // Credentials whose owner is unknown: scoped to this runtime (and its principal key).
            (None, Some(_)) => f
                .tag(15)
                .bytes(blake3::hash(runtime.principal_key()).as_bytes()),
            (None, None) => f.tag(16),
        };
        match credential_digest(parts, endpoint, runtime) {
            Some(d) => f.tag(11).bytes(&d),
            None => f.tag(12),
        };
    }
    CacheKey(*f.0.finalize().as_bytes())
}

/// The request's value of header `name`: a `#[header]` argument wins over the stitch's static
/// headers, which win over the runtime's defaults (the same precedence as the request itself).
fn header_value<'a>(
    name: &str,
    parts: &'a RequestParts,
    endpoint: &'a Endpoint,
    runtime: &'a Runtime,
) -> Option<&'a [u8]> {
    if let Some((_, v)) = parts
        .headers
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Some(v.as_bytes());
    }
    if let Some((_, v)) = endpoint
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Some(v.as_bytes());
    }
    runtime.default_headers().get(name).map(|v| v.as_bytes())
}

/// A keyed hash of every credential the request carries, or `None` for an anonymous request.
fn credential_digest(
    parts: &RequestParts,
    endpoint: &Endpoint,
    runtime: &Runtime,
) -> Option<[u8; 32]> {
    let has_any = parts.headers.iter().any(|(n, _)| is_credential_header(n))
        || endpoint
            .headers
            .iter()
            .any(|(n, _)| is_credential_header(n))
        || runtime.has_default_credentials();
    if !has_any {
        return None;
    }
    let mut f = Fields(blake3::Hasher::new_keyed(runtime.principal_key()));
    for name in CREDENTIAL_HEADERS {
        match header_value(name, parts, endpoint, runtime) {
            Some(v) => f.tag(1).str(name).bytes(v),
            None => f.tag(0),
        };
    }
    Some(*f.0.finalize().as_bytes())
}
