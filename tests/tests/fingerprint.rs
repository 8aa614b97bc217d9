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
    ];
    let text: Vec<String> = golden
        .iter()
        .map(|(n, v)| format!("{n}={v:#018x}"))
        .collect();
    assert_eq!(text, GOLDEN, "fingerprint algorithm changed");
}

const GOLDEN: [&str; 4] = [
    "u64=0x8a62b8090e8a4451",
    "String=0x2aad0545b2ab9521",
    "v1::User=0x2617e1a1b5c0952b",
    "enums::Tagged=0xcf429024c5d7832f",
];
