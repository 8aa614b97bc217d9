//! Cache keys, derived — never written by users — from everything that reaches the request: a key
//! format version, the stitch's descriptor (method, template, static query and headers, `pick`,
//! arguments, output fingerprint), the runtime's base URL and default headers, every per-call
//! input (path values, query pairs, header arguments, body), the principal, and the invalidation
//! generations. Hashed with BLAKE3, so crafted inputs cannot make two keys collide; every field
//! is length-prefixed, so no two field sequences hash alike.
//!
//! Invariants: any per-call input that reaches the request reaches the key, so two calls that
//! could get different responses never share an entry; a secret (a credential header or query
//! value, URL userinfo, a `secret` argument) goes in only as a hash keyed with the runtime's
//! `principal_key`, never in clear and never under the public format key.

use crate::auth::{is_credential_header, is_credential_query_key, Principal};
use crate::cache::{CachePolicy, Scope};
use crate::endpoint::{Endpoint, Role};
use crate::http::request::RequestParts;

/// The key-format version, as the key of a keyed BLAKE3 (public: a constant key keeps BLAKE3's
/// collision resistance and saves deriving a context key on every call). v2: a call's key is
/// keyed by its stitch's static digest instead of hashing it (entries of v1 builds are not read).
const KEY_FORMAT: &[u8; 32] = b"stitch cache key format v2 .....";

/// What a runtime adds to every key: passed in by the caller (the pipeline), so the cache never
/// reaches back up into the runtime that owns it.
#[derive(Clone, Copy)]
pub(crate) struct KeyContext<'a> {
    /// The runtime's `principal_key`: keys every secret folded into a key.
    pub(crate) principal_key: &'a [u8; 32],
    /// The runtime's `base_url`, which overrides the descriptor's.
    pub(crate) base_url: Option<&'a str>,
    /// The runtime's default headers (credential-named ones are left out of keys).
    pub(crate) default_headers: &'a http::HeaderMap,
    /// The digest of the runtime's default credentials, if it has any.
    pub(crate) default_credentials: Option<&'a [u8; 32]>,
}

/// A derived cache key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheKey(pub(crate) [u8; 32]);

/// A map hashes the key's first 16 bytes as one `u128` (one step of the maps' seeded hasher)
/// rather than all 32 as a slice with its length: the key is a BLAKE3 digest, whose bytes are
/// already uniform, and every call looks it up in several maps (in-process tier, flights, fleet
/// waiters). Keys that agree on 128 bits cannot be found by grinding inputs, so buckets cannot be
/// flooded on purpose; equal keys still hash alike.
impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut head = [0; 16];
        head.copy_from_slice(&self.0[..16]);
        state.write_u128(u128::from_le_bytes(head));
    }
}

impl CacheKey {
    /// The key as stored in a shared store: the entry-value key of `layout` (the runtime's
    /// `key_prefix`), one hash tag per entry, named by the hex digest. The key format version is
    /// in the digest (`KEY_FORMAT`), so a new format never reads an old entry.
    pub(crate) fn store_key(&self, layout: &crate::store::keys::KeyLayout) -> String {
        // Hex on the stack: one allocation per key, the key itself.
        layout.entry_value(self.hex(&mut [0; 64]))
    }

    /// The key from its hex digest (as fleet events carry it); `None` for anything else.
    pub(crate) fn from_hex(hex: &[u8]) -> Option<CacheKey> {
        if hex.len() != 64 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
        }
        Some(CacheKey(out))
    }

    pub(crate) fn hex<'b>(&self, out: &'b mut [u8; 64]) -> &'b str {
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = b"0123456789abcdef"[(b >> 4) as usize];
            out[2 * i + 1] = b"0123456789abcdef"[(b & 15) as usize];
        }
        // Only ASCII hex digits were written.
        std::str::from_utf8(out).unwrap_or_default()
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", &self.hex(&mut [0; 64])[..16])
    }
}

/// A keyed BLAKE3 fed field by field through a small buffer: a call's key is a dozen short
/// fields, and each `Hasher::update` has a fixed cost well above copying a few bytes (callgrind:
/// ~1 K instructions per key in updates alone). Buffering changes nothing in the digest (BLAKE3
/// hashes the concatenation of its updates, however they are split).
struct Fields {
    hasher: blake3::Hasher,
    buf: [u8; FIELDS_BUF],
    len: usize,
}

/// One BLAKE3 block: short fields gather to about this much before they go to the hasher.
const FIELDS_BUF: usize = 64;

impl Fields {
    fn keyed(key: &[u8; 32]) -> Self {
        Fields {
            hasher: blake3::Hasher::new_keyed(key),
            buf: [0; FIELDS_BUF],
            len: 0,
        }
    }
    fn put(&mut self, b: &[u8]) {
        if self.len + b.len() > FIELDS_BUF {
            self.hasher.update(&self.buf[..self.len]);
            self.len = 0;
            if b.len() > FIELDS_BUF {
                self.hasher.update(b);
                return;
            }
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.put(&(b.len() as u64).to_le_bytes());
        self.put(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_le_bytes());
        self
    }
    fn tag(&mut self, t: u8) -> &mut Self {
        self.put(&[t]);
        self
    }
    /// Borrows: a `blake3::Hasher` is ~1.9 KB, and taking it by value copies it.
    fn finalize(&mut self) -> [u8; 32] {
        self.hasher.update(&self.buf[..self.len]);
        self.len = 0;
        *self.hasher.finalize().as_bytes()
    }
}

/// Fields that carry secrets, hashed with the runtime's principal key (not the public format key)
/// so a store holding the keys cannot test guesses of a secret against them. Created only when a
/// secret turns up.
struct Secrets<'k> {
    key: &'k [u8; 32],
    fields: Option<Fields>,
}

impl<'k> Secrets<'k> {
    fn new(key: &'k [u8; 32]) -> Self {
        Secrets { key, fields: None }
    }
    fn add(&mut self) -> &mut Fields {
        let key = self.key;
        self.fields.get_or_insert_with(|| Fields::keyed(key))
    }
    /// Folds the secrets' digest into `f` (a distinct tag when there were none). Borrows, as
    /// [`Fields::finalize`] does.
    fn fold_into(&mut self, f: &mut Fields) {
        match &mut self.fields {
            Some(s) => f.tag(17).bytes(&s.finalize()),
            None => f.tag(18),
        };
    }
}

/// Whether a URL text may carry userinfo (`user:password@`): then it is hashed as a secret.
fn may_have_userinfo(text: &str) -> bool {
    text.contains('@')
}

/// The part of every key of one stitch that never changes in a runtime: everything the descriptor
/// and the runtime add to each request — the stitch, its method, the output's fingerprint and
/// `pick`, the base URL and the template (pieces and static query), the static headers, the
/// arguments and their roles, and the runtime's default headers. Credentials among them (a
/// credential-named header or query key, URL userinfo) go in as a keyed hash. Two stitches sharing
/// a `name` but differing in anything else therefore never share keys. Computed once per stitch
/// and runtime.
pub(crate) fn static_digest(
    endpoint: &Endpoint,
    policy: &CachePolicy,
    cx: KeyContext<'_>,
) -> [u8; 32] {
    let mut f = Fields::keyed(KEY_FORMAT);
    let mut secret = Secrets::new(cx.principal_key);
    f.str(endpoint.name)
        .str(endpoint.method.as_str())
        .u64(policy.fingerprint);
    f.u64(endpoint.pick.len() as u64);
    for step in endpoint.pick {
        f.str(step);
    }
    if endpoint.absolute {
        f.tag(0);
    } else {
        let base = cx.base_url.or(endpoint.base_url).unwrap_or("");
        if may_have_userinfo(base) {
            f.tag(2);
            secret.add().str(base);
        } else {
            f.tag(1).str(base);
        }
    }
    f.u64(endpoint.pieces.len() as u64);
    for piece in endpoint.pieces {
        if may_have_userinfo(piece) {
            f.tag(2);
            secret.add().str(piece);
        } else {
            f.tag(1).str(piece);
        }
    }
    let static_query = endpoint.static_query.unwrap_or("");
    let pairs = url::form_urlencoded::parse(static_query.as_bytes());
    f.tag(4).u64(pairs.count() as u64);
    for (k, v) in pairs {
        if is_credential_query_key(&k) {
            f.tag(2).str(&k);
            secret.add().str(&k).str(&v);
        } else {
            f.tag(1).str(&k).str(&v);
        }
    }
    f.u64(endpoint.headers.len() as u64);
    for (name, value) in endpoint.headers {
        if is_credential_header(name) {
            f.tag(2).str(name);
            secret.add().str(name).str(value);
        } else {
            f.tag(1).str(name).str(value);
        }
    }
    f.u64(endpoint.arguments.len() as u64);
    for (name, role) in endpoint.arguments {
        f.str(name);
        match role {
            Role::Path => f.tag(1),
            Role::Query(k) => f.tag(2).str(k),
            Role::JsonBody => f.tag(3),
            Role::FormBody => f.tag(4),
            Role::Header(h) => f.tag(5).str(h),
            Role::SecretQuery(k) => f.tag(6).str(k),
            Role::SecretHeader(h) => f.tag(7).str(h),
        };
    }
    // The runtime's defaults other than credentials, by value (credentials are the principal's,
    // see `derive`); sorted, so the order they were configured in does not matter.
    let mut defaults: Vec<(&str, &[u8])> = cx
        .default_headers
        .iter()
        .filter(|(n, _)| !is_credential_header(n.as_str()))
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    defaults.sort_unstable();
    f.u64(defaults.len() as u64);
    for (name, value) in defaults {
        f.str(name).bytes(value);
    }
    match policy.scope {
        Scope::Principal => f.tag(9),
        Scope::App => f.tag(13),
    };
    secret.fold_into(&mut f);
    f.finalize()
}

/// Derives the key of one call from the stitch's [`static_digest`] and the call's own inputs:
/// every path value, query pair and `#[header]` argument and the body — secret ones (credential
/// names, `secret` arguments) only as a keyed hash — and, for principal-scoped stitches, the
/// principal: the client's binding, the `auth` provider's principal (`auth`, resolved by the
/// caller) and the runtime's default credentials.
#[allow(clippy::too_many_arguments)]
pub(crate) fn derive(
    static_digest: &[u8; 32],
    policy: &CachePolicy,
    parts: &RequestParts,
    cx: KeyContext<'_>,
    principal: Option<&Principal>,
    auth: Option<&[u8; 32]>,
    generations: (u64, u64),
) -> CacheKey {
    // Keyed by the static digest (itself keyed by `KEY_FORMAT`) rather than hashing it as input:
    // the call's own fields of a typical GET then fit one BLAKE3 block, one compression instead
    // of two on every call that consults the cache (callgrind, `benches/examples/l2probe.rs`).
    let mut f = Fields::keyed(static_digest);
    let mut secret = Secrets::new(cx.principal_key);
    f.u64(generations.0).u64(generations.1);
    f.u64(parts.path.len() as u64);
    for value in &parts.path {
        f.str(value);
    }
    f.u64(parts.query.len() as u64);
    for (i, (k, v)) in parts.query.iter().enumerate() {
        if parts.secret_pairs.contains(&i) {
            f.tag(2).str(k);
            secret.add().str(k).str(v);
        } else {
            f.tag(1).str(k).str(v);
        }
    }
    match &parts.body {
        Some((body, content_type)) => f.tag(5).str(content_type).bytes(body),
        None => f.tag(6),
    };
    // Every header argument: a `#[header]` is a per-call input like any other (`accept-language`,
    // `x-tenant`, ...), and a secret one (`api-key`, `#[header(.., secret)]`) is a credential.
    f.u64(parts.headers.len() as u64);
    for (name, value) in &parts.headers {
        if value.is_sensitive() {
            f.tag(2).str(name);
            secret.add().str(name).bytes(value.as_bytes());
        } else {
            f.tag(1).str(name).bytes(value.as_bytes());
        }
    }
    if policy.scope == Scope::Principal {
        match principal {
            Some(p) => f.tag(9).bytes(&p.digest),
            None => f.tag(10),
        };
        match auth {
            Some(digest) => f.tag(14).bytes(digest),
            None => f.tag(16),
        };
        match cx.default_credentials {
            Some(digest) => f.tag(11).bytes(digest),
            None => f.tag(12),
        };
    }
    secret.fold_into(&mut f);
    CacheKey(f.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer never changes a digest: fields of every length, across the buffer's bounds
    /// and longer than it, hash as their plain concatenation does.
    #[test]
    fn buffered_fields_hash_as_their_concatenation() {
        let key = [7u8; 32];
        for lens in [
            &[0usize, 1, 2][..],
            &[63, 1, 1],
            &[64, 64],
            &[65],
            &[10, 200, 3, 56, 64, 1],
            &[1; 70],
        ] {
            let mut f = Fields::keyed(&key);
            let mut plain = blake3::Hasher::new_keyed(&key);
            for (i, &n) in lens.iter().enumerate() {
                let field: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
                f.bytes(&field).u64(i as u64).tag(i as u8);
                plain.update(&(n as u64).to_le_bytes());
                plain.update(&field);
                plain.update(&(i as u64).to_le_bytes());
                plain.update(&[i as u8]);
            }
            assert_eq!(f.finalize(), *plain.finalize().as_bytes(), "{lens:?}");
        }
    }
}
