//! JSON Schemas for stitch descriptions, taken from `schemars::JsonSchema` where a type implements
//! it and left out where it does not (autoref specialization on concrete types: the macro names
//! each type, so the choice is made at compile time without a bound on the user's types).

use std::marker::PhantomData;

/// Names a type for schema lookup.
#[doc(hidden)]
pub struct Probe<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> Probe<T> {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Probe(PhantomData)
    }
}

/// Chosen when `T: JsonSchema`.
#[doc(hidden)]
pub trait ViaJsonSchema {
    fn schema(&self) -> Option<serde_json::Value>;
}

impl<T: schemars::JsonSchema + ?Sized> ViaJsonSchema for &Probe<T> {
    fn schema(&self) -> Option<serde_json::Value> {
        Some(
            schemars::SchemaGenerator::default()
                .into_root_schema_for::<T>()
                .to_value(),
        )
    }
}

/// The fallback: no schema.
#[doc(hidden)]
pub trait NoSchema {
    fn schema(&self) -> Option<serde_json::Value>;
}

impl<T: ?Sized> NoSchema for Probe<T> {
    fn schema(&self) -> Option<serde_json::Value> {
        None
    }
}

/// `schemas!([ArgTypes...], OutputType)`: a `fn() -> SchemaSet` for an endpoint descriptor.
#[doc(hidden)]
#[macro_export]
macro_rules! __stitch_schemas {
    ([$($arg:ty),*], $out:ty) => {
        || {
            #[allow(unused_imports)]
            use $crate::__private::{NoSchema as _, ViaJsonSchema as _};
            $crate::__private::SchemaSet {
                arguments: ::std::vec![$((&&$crate::__private::Probe::<$arg>::new()).schema()),*],
                output: (&&$crate::__private::Probe::<$out>::new()).schema(),
            }
        }
    };
}

/// `name!("Trait::method")`: the stitch's full name, prefixed with the caller's module path.
#[doc(hidden)]
#[macro_export]
macro_rules! __stitch_name {
    ($name:literal) => {
        ::core::concat!(::core::module_path!(), "::", $name)
    };
}
