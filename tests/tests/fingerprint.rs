//! Schema fingerprints: computed at compile time from the serde-visible shape. Same shape → same
//! constant; any change serde would see → a different one; changes serde cannot see → none.

#![allow(dead_code)]

use serde::Deserialize;
use stitch::Fingerprint;

macro_rules! fp {
    ($t:ty) => {
        <$t as Fingerprint>::FINGERPRINT
    };
}

mod v1 {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct User {
        pub id: u64,
        pub name: String,
        pub tags: Vec<String>,
    }
}

mod same_shape_other_name {
    use super::*;
    /// A doc comment and another Rust name: invisible to serde.
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Person {
        pub id: u64,
        pub name: String,
        pub tags: Vec<String>,
    }
}

mod renamed_field {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct User {
        pub id: u64,
        pub full_name: String,
        pub tags: Vec<String>,
    }
}

mod renamed_back {
    use super::*;
    /// The Rust field changed, the wire name did not.
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct User {
        pub id: u64,
        #[serde(rename = "name")]
        pub full_name: String,
        pub tags: Vec<String>,
    }
}

mod changed_type {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct User {
        pub id: String,
        pub name: String,
        pub tags: Vec<String>,
    }
}

mod optional_field {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct User {
        pub id: u64,
        pub name: Option<String>,
        pub tags: Vec<String>,
    }
}

mod camel {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    #[serde(rename_all = "camelCase")]
    pub struct A {
        pub user_id: u64,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct B {
        #[serde(rename = "userId")]
        pub id_of_user: u64,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct C {
        pub user_id: u64,
    }
}

mod flags {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Plain {
        pub a: u32,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Defaulted {
        #[serde(default)]
        pub a: u32,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct WithSkipped {
        pub a: u32,
        #[serde(skip)]
        pub cache: u32,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Outer {
        #[serde(flatten)]
        pub inner: Plain,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Nested {
        pub inner: Plain,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    #[serde(deny_unknown_fields)]
    pub struct Strict {
        pub a: u32,
    }
}

mod enums {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub enum Status {
        Active,
        Suspended { reason: String },
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub enum StatusPlus {
        Active,
        Suspended { reason: String },
        Deleted,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    #[serde(tag = "type")]
    pub enum Tagged {
        Active,
        Suspended { reason: String },
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    #[serde(tag = "type", content = "data")]
    pub enum Adjacent {
        Active,
        Suspended { reason: String },
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    #[serde(untagged)]
    pub enum Untagged {
        Active,
        Suspended { reason: String },
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    #[serde(rename_all = "snake_case")]
    pub enum Snake {
        Active,
        Suspended { reason: String },
    }
}

mod recursive {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Node {
        pub label: String,
        pub children: Vec<Node>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Page<T> {
        pub items: Vec<T>,
        pub next: Option<String>,
    }
}

/// Two deploys of `Item`, each holding its own `inner::Item`: the written field type is the same
/// text (`inner::Item`, and the container's name), the shapes are not.
mod deploy_a {
    use super::*;
    pub mod inner {
        use super::*;
        #[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
        pub struct Item {
            pub id: u64,
        }
    }
    #[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
    pub struct Item {
        pub inner: inner::Item,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Wrapper {
        pub item: inner::Item,
        pub all: Vec<inner::Item>,
        pub maybe: Option<inner::Item>,
        pub by_name: std::collections::HashMap<String, inner::Item>,
        pub sorted: std::collections::BTreeMap<String, Vec<inner::Item>>,
    }
}

mod deploy_b {
    use super::*;
    pub mod inner {
        use super::*;
        /// `id` became `name`: a different shape under the same written name.
        #[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
        pub struct Item {
            #[serde(default)]
            pub name: String,
        }
    }
    #[derive(Debug, Clone, Deserialize, stitch::Fingerprint)]
    pub struct Item {
        pub inner: inner::Item,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Wrapper {
        pub item: inner::Item,
        pub all: Vec<inner::Item>,
        pub maybe: Option<inner::Item>,
        pub by_name: std::collections::HashMap<String, inner::Item>,
        pub sorted: std::collections::BTreeMap<String, Vec<inner::Item>>,
    }
}

/// The same shape as `deploy_a::Item`, spelled through other names.
mod deploy_a_renamed {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Id {
        pub id: u64,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Thing {
        pub inner: Id,
    }
}

/// Direct self-recursion, written three ways, and shapes that differ from it.
mod self_recursive {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Node {
        pub label: String,
        pub children: Vec<Node>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Tree {
        pub label: String,
        pub children: Vec<Self>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct NumberedNode {
        pub label: u64,
        pub children: Vec<NumberedNode>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct List {
        pub head: u64,
        pub tail: Option<Box<List>>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub enum Expr {
        Lit(u64),
        Add(Box<Expr>, Box<Expr>),
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub enum SameExpr {
        Lit(u64),
        Add(Box<Self>, Box<Self>),
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub enum OtherExpr {
        Lit(u64),
        Add(Box<OtherExpr>, u64),
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Generic<T> {
        pub value: T,
        pub children: std::collections::BTreeMap<String, Generic<T>>,
    }
}

/// Mutual recursion, cut by pinning one type of the cycle.
mod mutual_v1 {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    #[fingerprint(version = "1")]
    pub struct Author {
        pub name: String,
        pub books: Vec<Book>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Book {
        pub title: String,
        pub author: Option<Box<Author>>,
    }
}

/// `Author` changed and its version was bumped.
mod mutual_v2 {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    #[fingerprint(version = "2")]
    pub struct Author {
        pub name: String,
        pub born: Option<u16>,
        pub books: Vec<Book>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Book {
        pub title: String,
        pub author: Option<Box<Author>>,
    }
}

/// `Book` changed: its own fields still count.
mod mutual_book_changed {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    #[fingerprint(version = "1")]
    pub struct Author {
        pub name: String,
        pub books: Vec<Book>,
    }
    #[derive(Deserialize, stitch::Fingerprint)]
    pub struct Book {
        pub isbn: String,
        pub author: Option<Box<Author>>,
    }
}

mod pinned_generic {
    use super::*;
    #[derive(Deserialize, stitch::Fingerprint)]
    #[fingerprint(version = "1")]
    pub struct Page<T> {
        pub items: Vec<T>,
    }
}

#[test]
fn a_nested_type_named_like_its_container_is_hashed_by_its_shape() {
    assert_ne!(
        fp!(deploy_a::Item),
        fp!(deploy_b::Item),
        "`inner::Item` inside `Item` follows the type, not its spelling"
    );
    assert_eq!(
        fp!(deploy_a::Item),
        fp!(deploy_a_renamed::Thing),
        "composed from the nested type's constant, so other names give the same shape"
    );
}

#[test]
fn changing_a_nested_type_changes_every_container_of_it() {
    assert_ne!(fp!(deploy_a::inner::Item), fp!(deploy_b::inner::Item));
    assert_ne!(fp!(deploy_a::Wrapper), fp!(deploy_b::Wrapper));
    assert_ne!(
        fp!(Vec<deploy_a::inner::Item>),
        fp!(Vec<deploy_b::inner::Item>)
    );
    assert_ne!(
        fp!(Option<deploy_a::inner::Item>),
        fp!(Option<deploy_b::inner::Item>)
    );
    assert_ne!(
        fp!(std::collections::HashMap<String, deploy_a::inner::Item>),
        fp!(std::collections::HashMap<String, deploy_b::inner::Item>)
    );
    assert_ne!(
        fp!(std::collections::BTreeMap<String, Vec<deploy_a::inner::Item>>),
        fp!(std::collections::BTreeMap<String, Vec<deploy_b::inner::Item>>)
    );
    // Generic containers compose: a `HashMap` and a `BTreeMap` of one shape are one shape.
    assert_eq!(
        fp!(std::collections::HashMap<String, deploy_a::inner::Item>),
        fp!(std::collections::BTreeMap<String, deploy_a_renamed::Id>)
    );
}

#[test]
fn direct_self_recursion_is_hashed_by_shape() {
    use self_recursive::*;
    assert_eq!(
        fp!(Node),
        fp!(Tree),
        "`Vec<Node>` and `Vec<Self>` are one shape"
    );
    assert_ne!(fp!(Node), fp!(NumberedNode));
    assert_ne!(fp!(Node), fp!(List));
    assert_ne!(fp!(Generic<u64>), fp!(Generic<String>));
    assert_ne!(fp!(Vec<Node>), fp!(Node));
    assert_eq!(fp!(Expr), fp!(SameExpr), "in enum variants too");
    assert_ne!(fp!(Expr), fp!(OtherExpr));
}

#[test]
fn mutual_recursion_with_a_pin_compiles_and_tracks_the_version_and_the_other_fields() {
    assert_ne!(fp!(mutual_v1::Book), fp!(mutual_v1::Author));
    assert_ne!(
        fp!(mutual_v1::Book),
        fp!(mutual_v2::Book),
        "bumping the pinned version reaches every type that holds it"
    );
    assert_ne!(fp!(mutual_v1::Author), fp!(mutual_v2::Author));
    assert_ne!(
        fp!(mutual_v1::Book),
        fp!(mutual_book_changed::Book),
        "the unpinned type's own fields still count"
    );
    assert_eq!(
        fp!(mutual_v1::Author),
        fp!(mutual_book_changed::Author),
        "a pinned type is its name and version: bump it by hand"
    );
    assert_ne!(
        fp!(pinned_generic::Page<u64>),
        fp!(pinned_generic::Page<String>),
        "a pinned generic type still hashes its type arguments"
    );
}

#[test]
fn same_shape_same_constant() {
    assert_eq!(fp!(v1::User), fp!(same_shape_other_name::Person));
    assert_eq!(fp!(v1::User), fp!(renamed_back::User));
    assert_eq!(fp!(camel::A), fp!(camel::B));
    assert_eq!(
        fp!(flags::Plain),
        fp!(flags::WithSkipped),
        "skipped fields are not on the wire"
    );
    assert_eq!(fp!(Vec<u64>), fp!(std::collections::VecDeque<u64>));
    assert_eq!(fp!(Box<String>), fp!(String));
    assert_eq!(fp!(std::sync::Arc<v1::User>), fp!(v1::User));
}

#[test]
fn any_visible_change_changes_the_constant() {
    let all = [
        fp!(v1::User),
        fp!(renamed_field::User),
        fp!(changed_type::User),
        fp!(optional_field::User),
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_ne!(fp!(camel::A), fp!(camel::C));
    assert_ne!(fp!(flags::Plain), fp!(flags::Defaulted));
    assert_ne!(fp!(flags::Outer), fp!(flags::Nested));
    assert_ne!(fp!(flags::Plain), fp!(flags::Strict));
    let enums = [
        fp!(enums::Status),
        fp!(enums::StatusPlus),
        fp!(enums::Tagged),
        fp!(enums::Adjacent),
        fp!(enums::Untagged),
        fp!(enums::Snake),
    ];
    for (i, a) in enums.iter().enumerate() {
        for b in &enums[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_ne!(fp!(recursive::Page<u64>), fp!(recursive::Page<String>));
    assert_ne!(fp!(u32), fp!(u64));
    assert_ne!(fp!(Option<u64>), fp!(u64));
    assert_ne!(
        fp!(std::collections::HashMap<String, u64>),
        fp!(Vec<(String, u64)>)
    );
    assert_ne!(fp!([u8; 4]), fp!([u8; 5]));
}

#[test]
fn recursive_types_have_a_fingerprint() {
    const NODE: u64 = fp!(recursive::Node);
    assert_ne!(NODE, 0);
}

/// Golden values: a change here means every deployed cache entry is orphaned on upgrade, so the
/// algorithm must only change deliberately (with a key-format version bump).
#[test]
fn golden_values() {
    let golden = [
        ("u64", fp!(u64)),
        ("String", fp!(String)),
        ("v1::User", fp!(v1::User)),
        ("enums::Tagged", fp!(enums::Tagged)),
        ("self_recursive::Node", fp!(self_recursive::Node)),
        ("mutual_v1::Book", fp!(mutual_v1::Book)),
    ];
    let text: Vec<String> = golden
        .iter()
        .map(|(n, v)| format!("{n}={v:#018x}"))
        .collect();
    assert_eq!(text, GOLDEN, "fingerprint algorithm changed");
}

const GOLDEN: [&str; 6] = [
    "u64=0x8a62b8090e8a4451",
    "String=0x2aad0545b2ab9521",
    "v1::User=0x2617e1a1b5c0952b",
    "enums::Tagged=0xcf429024c5d7832f",
    "self_recursive::Node=0x069cef7eb0bffeae",
    "mutual_v1::Book=0xb6fb6a7adc9f49ac",
];

/// Against a real upstream and a store shared by two deploys: the second deploy's `Item` holds a
/// differently shaped `inner::Item`, so it must not read the first deploy's entry (with
/// `#[serde(default)]` on the new field, the old entry would even decode, silently wrong).
mod deploys {
    use super::*;

    #[stitch::seam(base_url = "http://declared.invalid")]
    pub trait Before {
        #[stitch(get, path = "/items/{id}", cache = "1m", name = "items.get")]
        async fn item(&self, id: u64) -> stitch::Result<deploy_a::Item>;
    }

    #[stitch::seam(base_url = "http://declared.invalid")]
    pub trait After {
        #[stitch(get, path = "/items/{id}", cache = "1m", name = "items.get")]
        async fn item(&self, id: u64) -> stitch::Result<deploy_b::Item>;
    }

    /// Mutually recursive output types, one pinned: cacheable like any other.
    #[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
    #[fingerprint(version = "1")]
    pub struct Folder {
        pub name: String,
        pub files: Vec<File>,
    }
    #[derive(Debug, Clone, PartialEq, Deserialize, stitch::Fingerprint)]
    pub struct File {
        pub name: String,
        pub parent: Option<Box<Folder>>,
    }

    #[stitch::seam(base_url = "http://declared.invalid")]
    pub trait Files {
        #[stitch(get, path = "/files/{id}", cache = "1m")]
        async fn file(&self, id: u64) -> stitch::Result<File>;
    }
}

fn shared(up: &stitch_tests::Upstream, store: &stitch::store::MemoryStore) -> stitch::Runtime {
    stitch::Runtime::builder()
        .base_url(up.url())
        .store(store.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_deploy_with_a_reshaped_nested_type_never_reads_the_old_entries() {
    use deploys::{After, AfterClient, Before, BeforeClient};
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The first answer has the old shape, every later one the new shape.
    let n = AtomicUsize::new(0);
    let up = stitch_tests::Upstream::start(move |_| {
        stitch_tests::Reply::json(if n.fetch_add(1, Ordering::SeqCst) == 0 {
            serde_json::json!({"inner": {"id": 7}})
        } else {
            serde_json::json!({"inner": {"name": "seven"}})
        })
    })
    .await;
    let store = stitch::store::MemoryStore::default();
    let before = BeforeClient::new(&shared(&up, &store)).unwrap();
    let after = AfterClient::new(&shared(&up, &store)).unwrap();
    assert_eq!(before.item(1).await.unwrap().inner.id, 7);
    assert_eq!(
        after.item(1).await.unwrap().inner.name,
        "seven",
        "the new deploy must not decode the old entry (it would, to an empty name)"
    );
    assert_eq!(up.hits(), 2, "the new shape went upstream");
}

#[tokio::test]
async fn a_pinned_mutually_recursive_output_is_cached() {
    use deploys::{Files, FilesClient};
    let up = stitch_tests::Upstream::start(|_| {
        stitch_tests::Reply::json(serde_json::json!({
            "name": "a.txt",
            "parent": {"name": "docs", "files": [{"name": "b.txt", "parent": null}]}
        }))
    })
    .await;
    let runtime = stitch::Runtime::builder()
        .base_url(up.url())
        .build()
        .unwrap();
    let api = FilesClient::new(&runtime).unwrap();
    let first = api.file(1).await.unwrap();
    assert_eq!(first.parent.as_ref().unwrap().files[0].name, "b.txt");
    assert_eq!(api.file(1).await.unwrap(), first);
    assert_eq!(up.hits(), 1, "the second call was a cache hit");
}
