//! Schema fingerprints: a `const` hash of the shape serde sees, computed at compile time and folded
//! into every cache key, so a deploy that changes an output type never reads entries written for
//! the old shape (for example from a store shared by a rolling deploy).
//!
//! Invariant: the fingerprint depends only on what serde can observe on the wire — field names after
//! renames, field types (recursively), enum variants and tagging, `flatten`/`default`/`skip` — and
//! never on Rust-only names (the type's own name, field order of a map).

/// A type whose serde-visible shape has a compile-time fingerprint.
///
/// Derive it with `#[derive(stitch::Fingerprint)]` next to `Deserialize`; std types and
/// `serde_json::Value` have impls. A derived fingerprint is composed from the field types' own
/// constants, so a change anywhere in a nested type changes every type that contains it.
///
/// Recursion: a type may hold itself directly (`children: Vec<Node>` or `Vec<Self>` inside `Node`).
/// Types that hold each other (`A` holds `B`, `B` holds `A`) would make a cycle of constants, which
/// rustc reports as "cycle detected when const-evaluating"; pin one type of the cycle by hand and
/// bump its version whenever it (or what it reaches) changes:
///
/// ```
/// #[derive(serde::Deserialize, stitch::Fingerprint)]
/// #[fingerprint(version = "1")]
/// struct Author { name: String, books: Vec<Book> }
///
/// #[derive(serde::Deserialize, stitch::Fingerprint)]
/// struct Book { title: String, author: Option<Box<Author>> }
///
/// use stitch::Fingerprint;
/// assert_ne!(Book::FINGERPRINT, Author::FINGERPRINT);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no schema fingerprint, so a cached entry written for an older shape of it could be read after a change",
    label = "this output type needs `stitch::Fingerprint` to be cached",
    note = "derive it: `#[derive(Clone, serde::Deserialize, stitch::Fingerprint)]`, or pin the cache's version by hand: `cache(ttl = \"5m\", version = \"1\")`"
)]
pub trait Fingerprint {
    /// The shape's hash.
    const FINGERPRINT: u64;
}

/// A `const fn` FNV-1a-based hasher for building fingerprints at compile time.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct ShapeHasher(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[doc(hidden)]
impl ShapeHasher {
    pub const fn new(kind: &str) -> Self {
        ShapeHasher(FNV_OFFSET).str(kind)
    }

    const fn byte(self, b: u8) -> Self {
        ShapeHasher((self.0 ^ b as u64).wrapping_mul(FNV_PRIME))
    }

    /// Length-prefixed so that `("ab", "c")` and `("a", "bc")` differ.
    pub const fn str(self, s: &str) -> Self {
        let bytes = s.as_bytes();
        let mut h = self.u64(bytes.len() as u64);
        let mut i = 0;
        while i < bytes.len() {
            h = h.byte(bytes[i]);
            i += 1;
        }
        h
    }

    pub const fn u64(self, v: u64) -> Self {
        let bytes = v.to_le_bytes();
        let mut h = self;
        let mut i = 0;
        while i < 8 {
            h = h.byte(bytes[i]);
            i += 1;
        }
        h
    }

    pub const fn flag(self, on: bool) -> Self {
        self.byte(on as u8)
    }

    pub const fn finish(self) -> u64 {
        // A final avalanche (splitmix64) so close inputs spread across the whole word.
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Stands for "the type being defined" inside a derived fingerprint (`Vec<Node>` in `Node` is hashed
/// as `Vec<SelfRef>`), so direct self-recursion composes without a const cycle.
#[doc(hidden)]
pub enum SelfRef {}

impl Fingerprint for SelfRef {
    const FINGERPRINT: u64 = ShapeHasher::new("self").finish();
}

/// The fingerprint of a hand-pinned version (`cache(version = "...")`).
#[doc(hidden)]
pub const fn pinned(version: &str) -> u64 {
    ShapeHasher::new("pinned").str(version).finish()
}

macro_rules! leaf {
    ($($t:ty => $name:literal),* $(,)?) => {$(
        impl Fingerprint for $t {
            const FINGERPRINT: u64 = ShapeHasher::new($name).finish();
        }
    )*};
}

leaf! {
    bool => "bool", char => "char",
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128", usize => "u64",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128", isize => "i64",
    f32 => "f32", f64 => "f64",
    String => "string", str => "string",
    () => "unit",
    serde_json::Value => "any",
    serde_json::Map<String, serde_json::Value> => "object",
    bytes::Bytes => "bytes",
}

impl<T: Fingerprint + ?Sized> Fingerprint for Box<T> {
    const FINGERPRINT: u64 = T::FINGERPRINT;
}
impl<T: Fingerprint + ?Sized> Fingerprint for std::sync::Arc<T> {
    const FINGERPRINT: u64 = T::FINGERPRINT;
}
impl<T: Fingerprint + ?Sized> Fingerprint for std::rc::Rc<T> {
    const FINGERPRINT: u64 = T::FINGERPRINT;
}
impl<T: Fingerprint + ?Sized + ToOwned> Fingerprint for std::borrow::Cow<'_, T> {
    const FINGERPRINT: u64 = T::FINGERPRINT;
}
impl<T: Fingerprint> Fingerprint for Option<T> {
    const FINGERPRINT: u64 = ShapeHasher::new("option").u64(T::FINGERPRINT).finish();
}

macro_rules! seq {
    ($($t:ty),*) => {$(
        impl<T: Fingerprint> Fingerprint for $t {
            const FINGERPRINT: u64 = ShapeHasher::new("seq").u64(T::FINGERPRINT).finish();
        }
    )*};
}
seq!(Vec<T>, std::collections::VecDeque<T>, [T]);

macro_rules! set {
    ($($t:ty),*) => {$(
        impl<T: Fingerprint, S> Fingerprint for $t {
            const FINGERPRINT: u64 = ShapeHasher::new("set").u64(T::FINGERPRINT).finish();
        }
    )*};
}
set!(std::collections::HashSet<T, S>);
impl<T: Fingerprint> Fingerprint for std::collections::BTreeSet<T> {
    const FINGERPRINT: u64 = ShapeHasher::new("set").u64(T::FINGERPRINT).finish();
}

impl<K: Fingerprint, V: Fingerprint, S> Fingerprint for std::collections::HashMap<K, V, S> {
    const FINGERPRINT: u64 = ShapeHasher::new("map")
        .u64(K::FINGERPRINT)
        .u64(V::FINGERPRINT)
        .finish();
}
impl<K: Fingerprint, V: Fingerprint> Fingerprint for std::collections::BTreeMap<K, V> {
    const FINGERPRINT: u64 = ShapeHasher::new("map")
        .u64(K::FINGERPRINT)
        .u64(V::FINGERPRINT)
        .finish();
}

impl<T: Fingerprint, const N: usize> Fingerprint for [T; N] {
    const FINGERPRINT: u64 = ShapeHasher::new("array")
        .u64(N as u64)
        .u64(T::FINGERPRINT)
        .finish();
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Fingerprint),+> Fingerprint for ($($name,)+) {
            const FINGERPRINT: u64 = ShapeHasher::new("tuple")
                $(.u64($name::FINGERPRINT))+
                .finish();
        }
    };
}
tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);

impl<T: Fingerprint + ?Sized> Fingerprint for &T {
    const FINGERPRINT: u64 = T::FINGERPRINT;
}
