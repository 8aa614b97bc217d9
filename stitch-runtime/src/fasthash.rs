//! The hasher of the runtime's internal maps. Their keys are either chosen by the program (stitch
//! names, descriptor addresses, pool keys) or cache keys: BLAKE3 digests of a request, which
//! remote input can influence only through a cryptographic hash whose output is then hashed with a
//! seed chosen per process, so colliding buckets would mean grinding BLAKE3 prefixes against an
//! unknown seed. SipHash's flooding resistance buys nothing there. `foldhash` (hashbrown's default
//! hasher) replaces the hand-written FNV-1a this module held; the alias stays so the maps name one
//! hasher.

/// `HashMap` with `foldhash`'s per-process seeded fast hasher.
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;
