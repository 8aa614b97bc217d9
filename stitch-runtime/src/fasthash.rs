//! The hasher of the runtime's internal maps (stitch names, descriptor addresses, pool keys),
//! whose keys are chosen by the program rather than by remote input, so SipHash's flooding
//! resistance buys nothing there. `foldhash` (hashbrown's default hasher) replaces the
//! hand-written FNV-1a this module held; the alias stays so the maps name one hasher.

/// `HashMap` with `foldhash`'s per-process seeded fast hasher.
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;
