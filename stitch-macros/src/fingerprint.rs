//! `#[derive(Fingerprint)]`: a `const` hash of the shape serde sees when it deserializes the type.
//!
//! What counts: field and variant names after `rename`/`rename_all` (and `alias`), field types (by
//! their own `Fingerprint` constants, never by their spelling), enum tagging (`tag`, `content`,
//! `untagged`), `flatten`, `default`, `skip`/`skip_deserializing`, `deny_unknown_fields`,
//! `transparent`, `from`/`try_from`, and custom `with`/`deserialize_with` functions (by path). What
//! does not: the type's Rust name, doc comments, `skip_serializing*`, attribute order.
//!
//! Recursion. A field type is composed from `<FieldType as Fingerprint>::FINGERPRINT`, so a cycle of
//! types would be a cycle of constants, which rustc rejects. Two ways cut it:
//! - direct self-recursion, written `Self` or the type's bare name (`Vec<Node>` inside `Node`), is
//!   rewritten to the marker `SelfRef` before the field type's constant is taken (`Vec<SelfRef>`),
//!   so it composes through the container's real impl; only a one-segment path can name the type
//!   being defined (`inner::Node` is another type and keeps its own constant; a longer path to the
//!   type itself, `crate::m::Node`, is a const cycle). A self-reference's generic arguments are not
//!   hashed: the type's own parameters already are;
//! - a cycle through other types (`A` holds `B`, `B` holds `A`) needs one of them pinned with
//!   `#[fingerprint(version = "1")]`: its constant is then its name and that version, it reads no
//!   field constant, and the types around it compose from it as usual. Bump the version whenever
//!   the pinned type (or what it reaches) changes shape.

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit_mut::VisitMut;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<String>,
    rename_all_fields: Option<String>,
    aliases: Vec<String>,
    tag: Option<String>,
    content: Option<String>,
    untagged: bool,
    default: bool,
    flatten: bool,
    skip: bool,
    other: bool,
    deny_unknown_fields: bool,
    transparent: bool,
    with: Option<String>,
    from: Option<Type>,
}

fn serde_attrs(attrs: &[syn::Attribute]) -> syn::Result<Serde> {
    let mut out = Serde::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(Ident::to_string)
                .unwrap_or_default();
            // `rename = "x"` or `rename(deserialize = "x")`: only the deserialize side matters.
            let string = |meta: &syn::meta::ParseNestedMeta<'_>| -> syn::Result<Option<String>> {
                if meta.input.peek(syn::Token![=]) {
                    return Ok(Some(meta.value()?.parse::<LitStr>()?.value()));
                }
                let mut de = None;
                meta.parse_nested_meta(|inner| {
                    let v = inner.value()?.parse::<LitStr>()?.value();
                    if inner.path.is_ident("deserialize") {
                        de = Some(v);
                    }
                    Ok(())
                })?;
                Ok(de)
            };
            match key.as_str() {
                "rename" => out.rename = string(&meta)?,
                "rename_all" => out.rename_all = string(&meta)?,
                "rename_all_fields" => out.rename_all_fields = string(&meta)?,
                "alias" => out.aliases.extend(string(&meta)?),
                "tag" => out.tag = string(&meta)?,
                "content" => out.content = string(&meta)?,
                "with" | "deserialize_with" => out.with = string(&meta)?,
                "from" | "try_from" => {
                    let ty = meta.value()?.parse::<LitStr>()?;
                    out.from = Some(ty.parse()?);
                }
                "untagged" => out.untagged = true,
                "flatten" => out.flatten = true,
                "skip" | "skip_deserializing" => out.skip = true,
                "other" => out.other = true,
                "deny_unknown_fields" => out.deny_unknown_fields = true,
                "transparent" => out.transparent = true,
                "default" => {
                    out.default = true;
                    if meta.input.peek(syn::Token![=]) {
                        meta.value()?.parse::<LitStr>()?;
                    }
                }
                _ => {
                    // Anything else (`bound`, `borrow`, `skip_serializing_if`, ...) does not change
                    // what deserialization accepts; consume its value.
                    if meta.input.peek(syn::Token![=]) {
                        meta.value()?.parse::<syn::Expr>()?;
                    } else if meta.input.peek(syn::token::Paren) {
                        meta.parse_nested_meta(|inner| {
                            if inner.input.peek(syn::Token![=]) {
                                inner.value()?.parse::<syn::Expr>()?;
                            }
                            Ok(())
                        })?;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// The container's `#[fingerprint(version = "...")]`, if any.
fn pinned_version(attrs: &[syn::Attribute]) -> syn::Result<Option<LitStr>> {
    let mut version: Option<LitStr> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("fingerprint")) {
        attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident("version") {
                return Err(meta.error(
                    "unknown `fingerprint` key: expected `version = \"...\"`",
                ));
            }
            let lit = match meta.value()?.parse::<syn::Lit>()? {
                syn::Lit::Str(lit) => lit,
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "`version` takes a string: `#[fingerprint(version = \"1\")]`",
                    ))
                }
            };
            if lit.value().trim().is_empty() {
                return Err(syn::Error::new(
                    lit.span(),
                    "`version` must not be empty: bump it by hand whenever the type's shape changes, e.g. `version = \"1\"`",
                ));
            }
            if version.is_some() {
                return Err(meta.error("duplicate `version`: a type has one pinned version"));
            }
            version = Some(lit);
            Ok(())
        })?;
    }
    Ok(version)
}

/// `#[fingerprint]` only pins a whole type: on a field or variant it would be silently meaningless.
fn no_inner_pin(attrs: &[syn::Attribute]) -> syn::Result<()> {
    match attrs.iter().find(|a| a.path().is_ident("fingerprint")) {
        Some(attr) => Err(syn::Error::new_spanned(
            attr,
            "`#[fingerprint(...)]` goes on the type, not on a field or variant: pin the type that closes the cycle with `#[fingerprint(version = \"1\")]`",
        )),
        None => Ok(()),
    }
}

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    match syn::parse2::<DeriveInput>(input).and_then(|i| expand(&i)) {
        Ok(t) => t,
        Err(e) => e.to_compile_error(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let container = serde_attrs(&input.attrs)?;
    let self_ident = &input.ident;
    let deny = container.deny_unknown_fields;
    let pin = pinned_version(&input.attrs)?;
    match &input.data {
        Data::Struct(s) => s.fields.iter().try_for_each(|f| no_inner_pin(&f.attrs))?,
        Data::Enum(e) => e.variants.iter().try_for_each(|v| {
            no_inner_pin(&v.attrs)?;
            v.fields.iter().try_for_each(|f| no_inner_pin(&f.attrs))
        })?,
        Data::Union(_) => {}
    }
    let body = if let Some(version) = &pin {
        // A pinned type reads none of its fields' constants (that is what cuts a cycle), only its
        // name, the version and its type arguments (so `Page<u64>` and `Page<String>` differ).
        let name = unraw(self_ident);
        let params = input.generics.type_params().map(|p| {
            let id = &p.ident;
            quote!(.u64(<#id as ::stitch::Fingerprint>::FINGERPRINT))
        });
        quote!(::stitch::__private::ShapeHasher::new("pinned-type").str(#name).str(#version) #(#params)*)
    } else if let Some(from) = &container.from {
        let fp = type_fp(from, self_ident);
        quote!(::stitch::__private::ShapeHasher::new("from").u64(#fp))
    } else {
        match &input.data {
            Data::Struct(s) => {
                let kind = if container.transparent {
                    "transparent"
                } else {
                    "struct"
                };
                let fields = fields(&s.fields, container.rename_all.as_deref(), self_ident)?;
                quote!(::stitch::__private::ShapeHasher::new(#kind)
                    .flag(#deny)
                    #fields)
            }
            Data::Enum(e) => {
                let tagging = match (&container.tag, &container.content, container.untagged) {
                    (_, _, true) => "untagged".to_owned(),
                    (Some(t), Some(c), _) => format!("adjacent:{t}:{c}"),
                    (Some(t), None, _) => format!("internal:{t}"),
                    _ => "external".to_owned(),
                };
                let mut chain = quote!(::stitch::__private::ShapeHasher::new("enum")
                    .str(#tagging)
                    .flag(#deny));
                for variant in &e.variants {
                    let attrs = serde_attrs(&variant.attrs)?;
                    if attrs.skip {
                        continue;
                    }
                    let name = attrs.rename.clone().unwrap_or_else(|| {
                        rename_variant(&unraw(&variant.ident), container.rename_all.as_deref())
                    });
                    let aliases = &attrs.aliases;
                    let rule = attrs
                        .rename_all
                        .as_deref()
                        .or(container.rename_all_fields.as_deref());
                    let fields = fields(&variant.fields, rule, self_ident)?;
                    let other = attrs.other;
                    chain = quote!(#chain .str("variant").str(#name) #(.str(#aliases))* .flag(#other) #fields);
                }
                chain
            }
            Data::Union(u) => {
                return Err(syn::Error::new(
                    u.union_token.span,
                    "`Fingerprint` cannot be derived for unions: serde cannot deserialize them",
                ))
            }
        }
    };
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(::stitch::Fingerprint));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::stitch::Fingerprint for #self_ident #ty_generics #where_clause {
            const FINGERPRINT: u64 = #body.finish();
        }
    })
}

/// The fields' part of the hash chain: kind, then per field name, flags and type.
fn fields(fields: &Fields, rule: Option<&str>, self_ident: &Ident) -> syn::Result<TokenStream> {
    let mut chain = TokenStream::new();
    match fields {
        Fields::Unit => chain.extend(quote!(.str("unit"))),
        Fields::Unnamed(u) => {
            let n = u.unnamed.len() as u64;
            chain.extend(quote!(.str("tuple").u64(#n)));
            for f in &u.unnamed {
                let attrs = serde_attrs(&f.attrs)?;
                if attrs.skip {
                    chain.extend(quote!(.str("skipped")));
                    continue;
                }
                let fp = type_fp(&f.ty, self_ident);
                let with = attrs.with.unwrap_or_default();
                chain.extend(quote!(.u64(#fp).str(#with)));
            }
        }
        Fields::Named(n) => {
            chain.extend(quote!(.str("fields")));
            for f in &n.named {
                let attrs = serde_attrs(&f.attrs)?;
                if attrs.skip {
                    continue;
                }
                let ident = f.ident.as_ref().expect("named field");
                let name = attrs
                    .rename
                    .clone()
                    .unwrap_or_else(|| rename_field(&unraw(ident), rule));
                let aliases = &attrs.aliases;
                let fp = type_fp(&f.ty, self_ident);
                let (default, flatten) = (attrs.default, attrs.flatten);
                let with = attrs.with.unwrap_or_default();
                chain.extend(quote!(
                    .str(#name) #(.str(#aliases))* .flag(#default).flag(#flatten).str(#with).u64(#fp)
                ));
            }
        }
    }
    Ok(chain)
}

/// `<T as Fingerprint>::FINGERPRINT`, with every reference to the type being defined replaced by
/// the `SelfRef` marker (see the module doc: the alternative is a const cycle).
fn type_fp(ty: &Type, self_ident: &Ident) -> TokenStream {
    let mut ty = ty.clone();
    SelfToMarker(self_ident).visit_type_mut(&mut ty);
    quote!(<#ty as ::stitch::Fingerprint>::FINGERPRINT)
}

/// Rewrites `Self` and the bare name of the type being defined (with any generic arguments) to
/// `::stitch::__private::SelfRef`. A path of two or more segments (`inner::Item`) or a qualified
/// one names some other type, whatever its last segment, and is left alone.
struct SelfToMarker<'a>(&'a Ident);

impl VisitMut for SelfToMarker<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(p) = ty {
            let names_self = p.qself.is_none()
                && p.path.leading_colon.is_none()
                && p.path.segments.len() == 1
                && (p.path.segments[0].ident == *self.0 || p.path.segments[0].ident == "Self");
            if names_self {
                *ty = syn::parse_quote_spanned!(p.path.segments[0].ident.span()=> ::stitch::__private::SelfRef);
                return;
            }
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

fn unraw(ident: &Ident) -> String {
    ident.to_string().trim_start_matches("r#").to_owned()
}

/// serde's `rename_all` on a snake_case field name.
fn rename_field(name: &str, rule: Option<&str>) -> String {
    let pascal = || {
        name.split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<String>()
    };
    match rule {
        Some("lowercase") | Some("snake_case") => name.to_owned(),
        Some("UPPERCASE") | Some("SCREAMING_SNAKE_CASE") => name.to_ascii_uppercase(),
        Some("PascalCase") => pascal(),
        Some("camelCase") => {
            let p = pascal();
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                .unwrap_or_default()
        }
        Some("kebab-case") => name.replace('_', "-"),
        Some("SCREAMING-KEBAB-CASE") => name.replace('_', "-").to_ascii_uppercase(),
        _ => name.to_owned(),
    }
}

/// serde's `rename_all` on a PascalCase variant name.
fn rename_variant(name: &str, rule: Option<&str>) -> String {
    let snake = || {
        let mut s = String::new();
        for (i, ch) in name.char_indices() {
            if i > 0 && ch.is_uppercase() {
                s.push('_');
            }
            s.push(ch.to_ascii_lowercase());
        }
        s
    };
    match rule {
        Some("lowercase") => name.to_ascii_lowercase(),
        Some("UPPERCASE") => name.to_ascii_uppercase(),
        Some("camelCase") => {
            let mut c = name.chars();
            c.next()
                .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
                .unwrap_or_default()
        }
        Some("snake_case") => snake(),
        Some("SCREAMING_SNAKE_CASE") => snake().to_ascii_uppercase(),
        Some("kebab-case") => snake().replace('_', "-"),
        Some("SCREAMING-KEBAB-CASE") => snake().replace('_', "-").to_ascii_uppercase(),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_rules_match_serde() {
        assert_eq!(rename_field("user_id", Some("camelCase")), "userId");
        assert_eq!(rename_field("user_id", Some("PascalCase")), "UserId");
        assert_eq!(rename_field("user_id", Some("kebab-case")), "user-id");
        assert_eq!(
            rename_field("user_id", Some("SCREAMING_SNAKE_CASE")),
            "USER_ID"
        );
        assert_eq!(
            rename_variant("BadRequest", Some("snake_case")),
            "bad_request"
        );
        assert_eq!(
            rename_variant("BadRequest", Some("camelCase")),
            "badRequest"
        );
        assert_eq!(
            rename_variant("BadRequest", Some("SCREAMING-KEBAB-CASE")),
            "BAD-REQUEST"
        );
    }
}
