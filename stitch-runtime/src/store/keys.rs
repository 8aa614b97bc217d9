//! Every key stitch writes to a shared store is made here, so the layout is one page to read.
//!
//! ```text
//! stitch:<prefix>:{b:<budget>}:tat      GCRA theoretical arrival time (µs, store clock)
//! stitch:<prefix>:{b:<budget>}:leases   holders of a concurrency budget, scored by expiry
//! stitch:<prefix>:{k:<circuit>}:state   a circuit's atomic state
//! stitch:<prefix>:{c:<digest>}:v2|:l|:g  a cache entry: value, fill lease, generation
//! stitch:<prefix>:{t:<name>}:tok2|:lease|:gen   a shared token: value, fill lease, generation
//! stitch:<prefix>:{s:<account>}:jar2|:lease|:ver  a shared session: jar, fill lease, version
//! stitch:<prefix>:{g:<scope>}:n         a fleet-wide generation (bulk invalidation of a scope)
//! stitch:<prefix>:ev                    the fleet's event channel
//! <key>:op:<id>  (same hash tag)       an idempotency marker (see `companion`)
//! ```
//!
//! The `{...}` part is a Redis Cluster hash tag: only it decides a key's slot, so every key a
//! script touches for one budget, entry or account lands on one slot (no `CROSSSLOT`). User
//! names are escaped so they cannot close the tag early or inject a tag of their own. A value
//! filled for the whole fleet (a cache entry, a token, a session) is a [`FillKeySet`]: its value,
//! fill lease and generation under one tag, since `fill_*` touch all three in one step.

use super::FillKeys;
use std::fmt::Write as _;

/// The version of the fill protocol (how `fill_*` keep a fill's lease and value), which ends the
/// name of every filled value's key (`:v2`, `:tok2`, `:jar2`): during a rolling deploy, builds
/// of different fill protocols sharing one store never read each other's values or leases
/// (each fills its own; generations, budgets and circuits stay shared). 2: the lease is held in
/// the value key itself (`store/redis.rs`, "Fills").
macro_rules! fill_protocol {
    () => {
        "2"
    };
}

/// The keys of one fleet-filled value (see [`Store::fill_claim`](super::Store::fill_claim)),
/// owned; all three share one hash tag. Made on every fleet claim (an L2 hit included): the three
/// keys are one string, back to back, so they cost one allocation and one scan of the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FillKeySet {
    /// The value, lease and generation keys, in that order.
    keys: String,
    /// Where the lease key starts in `keys`.
    lease_at: usize,
    /// Where the generation key starts in `keys`.
    generation_at: usize,
}

impl FillKeySet {
    /// The keys, borrowed, as the `fill_*` verbs take them.
    pub fn keys(&self) -> FillKeys<'_> {
        FillKeys {
            value: &self.keys[..self.lease_at],
            lease: &self.keys[self.lease_at..self.generation_at],
            generation: &self.keys[self.generation_at..],
        }
    }
}

/// The names ending a filled value's key: a cache entry's, a shared token's, a shared session's.
const ENTRY_VALUE: &str = concat!("v", fill_protocol!());
const TOKEN_VALUE: &str = concat!("tok", fill_protocol!());
const SESSION_VALUE: &str = concat!("jar", fill_protocol!());

/// The namespace every stitch key starts with.
pub const NAMESPACE: &str = "stitch";

/// The key layout of one fleet: the namespace and the user's `key_prefix` (two fleets on one
/// store with different prefixes never see each other's keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    /// `stitch:` or `stitch:<prefix>:`.
    base: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        KeyLayout::new(None)
    }
}

impl KeyLayout {
    /// The layout under `key_prefix` (`None`: no prefix).
    pub fn new(key_prefix: Option<&str>) -> Self {
        let mut base = format!("{NAMESPACE}:");
        if let Some(p) = key_prefix {
            escape_into(&mut base, p);
            base.push(':');
        }
        KeyLayout { base }
    }

    fn tagged(&self, kind: &str, name: &str, suffix: &str) -> String {
        let mut k = String::with_capacity(self.base.len() + name.len() + suffix.len() + 8);
        self.push_tag(&mut k, kind, name, !needs_escape(name));
        k.push_str(suffix);
        k
    }

    /// Appends `<base>{<kind>:<name, escaped>}:` (`plain`: `name` has nothing to escape).
    fn push_tag(&self, k: &mut String, kind: &str, name: &str, plain: bool) {
        k.push_str(&self.base);
        k.push('{');
        k.push_str(kind);
        k.push(':');
        if plain {
            k.push_str(name);
        } else {
            escape_into(k, name);
        }
        k.push_str("}:");
    }

    /// The three keys of a fill under one tag, `suffixes` naming the value, lease and generation
    /// keys: one allocation, and the name scanned for escapes once.
    fn fill(&self, kind: &str, name: &str, suffixes: [&str; 3]) -> FillKeySet {
        let plain = !needs_escape(name);
        let tag = self.base.len() + kind.len() + name.len() + 4;
        let mut keys =
            String::with_capacity(3 * tag + suffixes.iter().map(|s| s.len()).sum::<usize>());
        let mut ends = [0; 3];
        for (end, suffix) in ends.iter_mut().zip(suffixes) {
            self.push_tag(&mut keys, kind, name, plain);
            keys.push_str(suffix);
            *end = keys.len();
        }
        FillKeySet {
            keys,
            lease_at: ends[0],
            generation_at: ends[1],
        }
    }

    /// The GCRA state of budget `name`.
    pub fn budget_tat(&self, name: &str) -> String {
        self.tagged("b", name, "tat")
    }

    /// The lease holders of budget `name` (same slot as its `tat`).
    pub fn budget_leases(&self, name: &str) -> String {
        self.tagged("b", name, "leases")
    }

    /// The state of circuit `name`.
    pub fn circuit(&self, name: &str) -> String {
        self.tagged("k", name, "state")
    }

    /// A cache entry's value (`digest` is the hex cache key digest).
    pub fn entry_value(&self, digest: &str) -> String {
        self.tagged("c", digest, ENTRY_VALUE)
    }

    /// A cache entry's fill lease.
    pub fn entry_lease(&self, digest: &str) -> String {
        self.tagged("c", digest, "l")
    }

    /// A cache entry's generation (bumped by invalidation).
    pub fn entry_generation(&self, digest: &str) -> String {
        self.tagged("c", digest, "g")
    }

    /// A cache entry's value, fill lease and generation, for the `fill_*` verbs.
    pub fn entry_fill(&self, digest: &str) -> FillKeySet {
        self.fill("c", digest, [ENTRY_VALUE, "l", "g"])
    }

    /// A shared token of `client`.
    pub fn token(&self, client: &str) -> String {
        self.tagged("t", client, TOKEN_VALUE)
    }

    /// The shared token `name`, its fill lease (who refreshes it for the fleet) and its
    /// generation (moved when it is rejected, so a refresh that started before cannot store).
    pub fn token_fill(&self, name: &str) -> FillKeySet {
        self.fill("t", name, [TOKEN_VALUE, "lease", "gen"])
    }

    /// A shared session (cookie jar) of `account`.
    pub fn session(&self, account: &str) -> String {
        self.tagged("s", account, SESSION_VALUE)
    }

    /// The version of `account`'s session.
    pub fn session_version(&self, account: &str) -> String {
        self.tagged("s", account, "ver")
    }

    /// `account`'s shared session (its jar), the fill lease of whoever logs in for the fleet,
    /// and its version (the fill generation, moved when the session is invalidated).
    pub fn session_fill(&self, account: &str) -> FillKeySet {
        self.fill("s", account, [SESSION_VALUE, "lease", "ver"])
    }

    /// A fleet-wide generation: `scope` names what it invalidates in bulk (`rt` for a runtime's
    /// whole cache, `client:<name>`, `stitch:<name>`; escaped like every name). One key per
    /// scope, each on its own slot.
    pub fn generation(&self, scope: &str) -> String {
        self.tagged("g", scope, "n")
    }

    /// The fleet's event channel (releases, invalidations).
    pub fn events(&self) -> String {
        format!("{}ev", self.base)
    }
}

/// A key on the same cluster slot as `key`, for state kept beside it (idempotency markers): when
/// `key` has a hash tag, `key` + `:` + `suffix` keeps it; when it has none, its whole text
/// becomes the tag, which hashes like the untagged key.
pub fn companion(key: &str, suffix: &str) -> String {
    let mut out = String::with_capacity(key.len() + suffix.len() + 3);
    companion_base(&mut out, key);
    out.push_str(suffix);
    out
}

/// Writes `key` as [`companion`] starts it: `key:` or `{key}:`.
fn companion_base(out: &mut String, key: &str) {
    if hash_tag(key).is_some() || key.is_empty() || key.contains('}') {
        // Keys with a tag keep it. A key without a tag that contains `}` cannot be wrapped
        // (the tag would end early); appending keeps it on a deterministic slot, which is all a
        // single-node store needs, and stitch's own keys always carry a tag.
        out.push_str(key);
    } else {
        out.push('{');
        out.push_str(key);
        out.push('}');
    }
    out.push(':');
}

/// The idempotency marker of operation `op` on `key` (`companion(key, "op:<op>")`, written in
/// one allocation: it is made on every fleet acquire).
pub(crate) fn marker(key: &str, op: super::OpId) -> String {
    let mut out = String::with_capacity(key.len() + 38);
    companion_base(&mut out, key);
    out.push_str("op:");
    let _ = write!(out, "{op}");
    out
}

/// The part of `key` Redis Cluster hashes: the text between the first `{` and the next `}` when
/// non-empty.
pub fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = &key[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

/// The Redis Cluster slot of `key` (CRC16/XMODEM of its hash tag or whole text, mod 16384).
pub fn slot(key: &str) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16(hashed.as_bytes()) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Whether `name` holds anything [`escape_into`] rewrites. Most names (every cache key's hex
/// digest) do not, and are copied as they are.
fn needs_escape(name: &str) -> bool {
    // Folded over every byte rather than stopping at the first hit: no branch per byte, so the
    // compiler can compare many bytes at once (names are short; a hit is rare).
    name.bytes()
        .fold(false, |hit, b| hit | matches!(b, b'{' | b'}' | b'%' | b':'))
}

/// Appends `name` with `{`, `}`, `%` and `:` percent-escaped, so a name can neither end or open a
/// hash tag nor fake a key segment, and two different names never give one key.
fn escape_into(out: &mut String, name: &str) {
    for c in name.chars() {
        match c {
            '{' | '}' | '%' | ':' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpId;

    #[test]
    fn fill_keys_match_the_single_keys_escaped_or_not() {
        let fleet = KeyLayout::new(Some("p:r"));
        for name in ["ab12", "a:b{c}%", ""] {
            let entry = fleet.entry_fill(name);
            let k = entry.keys();
            assert_eq!(
                (k.value, k.lease, k.generation),
                (
                    &*fleet.entry_value(name),
                    &*fleet.entry_lease(name),
                    &*fleet.entry_generation(name)
                )
            );
            let session = fleet.session_fill(name);
            let k = session.keys();
            assert_eq!(k.value, fleet.session(name));
            assert_eq!(k.lease, fleet.tagged("s", name, "lease"));
            assert_eq!(k.generation, fleet.session_version(name));
            let token = fleet.token_fill(name);
            assert_eq!(token.keys().value, fleet.token(name));
        }
        assert_eq!(
            fleet.entry_fill("a:b").keys().lease,
            "stitch:p%3Ar:{c:a%3Ab}:l"
        );
    }

    #[test]
    fn layout_with_and_without_prefix() {
        let plain = KeyLayout::default();
        assert_eq!(plain.budget_tat("github"), "stitch:{b:github}:tat");
        assert_eq!(plain.events(), "stitch:ev");
        let fleet = KeyLayout::new(Some("prod"));
        assert_eq!(fleet.budget_tat("github"), "stitch:prod:{b:github}:tat");
        assert_eq!(
            fleet.budget_leases("github"),
            "stitch:prod:{b:github}:leases"
        );
        assert_eq!(fleet.circuit("github"), "stitch:prod:{k:github}:state");
        assert_eq!(fleet.entry_value("ab12"), "stitch:prod:{c:ab12}:v2");
        assert_eq!(fleet.entry_lease("ab12"), "stitch:prod:{c:ab12}:l");
        assert_eq!(fleet.entry_generation("ab12"), "stitch:prod:{c:ab12}:g");
        assert_eq!(fleet.token("app"), "stitch:prod:{t:app}:tok2");
        assert_eq!(fleet.session("me"), "stitch:prod:{s:me}:jar2");
        assert_eq!(fleet.session_version("me"), "stitch:prod:{s:me}:ver");
        assert_eq!(fleet.events(), "stitch:prod:ev");
        let entry = fleet.entry_fill("ab12");
        let k = entry.keys();
        assert_eq!(
            (k.value, k.lease, k.generation),
            (
                "stitch:prod:{c:ab12}:v2",
                "stitch:prod:{c:ab12}:l",
                "stitch:prod:{c:ab12}:g"
            )
        );
        let session = fleet.session_fill("me");
        let k = session.keys();
        assert_eq!(
            (k.value, k.lease, k.generation),
            (
                "stitch:prod:{s:me}:jar2",
                "stitch:prod:{s:me}:lease",
                "stitch:prod:{s:me}:ver"
            )
        );
        let token = fleet.token_fill("app");
        let k = token.keys();
        assert_eq!(
            (k.value, k.lease, k.generation),
            (
                "stitch:prod:{t:app}:tok2",
                "stitch:prod:{t:app}:lease",
                "stitch:prod:{t:app}:gen"
            )
        );
        assert_eq!(fleet.generation("rt"), "stitch:prod:{g:rt}:n");
        assert_eq!(
            fleet.generation("client:github"),
            "stitch:prod:{g:client%3Agithub}:n"
        );
    }

    #[test]
    fn one_concern_is_one_slot_and_budgets_spread() {
        let l = KeyLayout::new(Some("p"));
        let tat = l.budget_tat("users");
        assert_eq!(hash_tag(&tat), Some("b:users"));
        assert_eq!(slot(&tat), slot(&l.budget_leases("users")));
        assert_eq!(slot(&tat), slot(&marker(&tat, OpId::from_u128(7))));
        assert_eq!(slot(&l.session("a")), slot(&l.session_version("a")));
        for set in [l.entry_fill("ab12"), l.session_fill("a"), l.token_fill("t")] {
            let k = set.keys();
            let one = slot(k.value);
            assert_eq!(
                (slot(k.lease), slot(k.generation)),
                (one, one),
                "a fill key set is one slot: {k:?}"
            );
            assert_eq!(slot(&marker(k.value, OpId::from_u128(9))), one);
        }
        assert_eq!(
            hash_tag(&l.generation("stitch:x}")),
            Some("g:stitch%3Ax%7D"),
            "a generation scope is escaped inside its own tag"
        );
        let slots: std::collections::HashSet<u16> = (0..50)
            .map(|i| slot(&l.budget_tat(&format!("api{i}"))))
            .collect();
        assert!(
            slots.len() > 40,
            "budgets spread over the cluster: {slots:?}"
        );
    }

    #[test]
    fn crc16_matches_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(
            slot("foo{}{bar}"),
            slot("foo{}{bar}"),
            "empty tag: whole key"
        );
        assert_eq!(hash_tag("foo{}{bar}"), None);
        assert_eq!(hash_tag("foo{{bar}}zap"), Some("{bar"));
    }

    #[test]
    fn names_cannot_break_out_of_their_tag() {
        let l = KeyLayout::new(Some("a}b{c"));
        let k = l.budget_tat("x}y:z");
        assert_eq!(k, "stitch:a%7Db%7Bc:{b:x%7Dy%3Az}:tat");
        assert_eq!(hash_tag(&k), Some("b:x%7Dy%3Az"));
        assert_ne!(
            KeyLayout::new(Some("a:b")).budget_tat("c"),
            KeyLayout::new(Some("a")).budget_tat("b:c"),
            "a prefix and a name never run together"
        );
    }

    #[test]
    fn companion_keeps_the_slot_of_untagged_keys() {
        assert_eq!(companion("plain", "op:1"), "{plain}:op:1");
        assert_eq!(slot("plain"), slot(&companion("plain", "op:1")));
        assert_eq!(companion("x{t}y", "m"), "x{t}y:m");
        assert_eq!(slot("x{t}y"), slot(&companion("x{t}y", "m")));
        let op = OpId::from_u128(0xab);
        for key in ["plain", "x{t}y", ""] {
            assert_eq!(marker(key, op), companion(key, &format!("op:{op}")));
        }
        assert_eq!(marker("k", op), "{k}:op:000000000000000000000000000000ab");
    }
}
