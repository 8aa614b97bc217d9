//! Expansion snapshots: what the macros generate, committed under `snapshots/` and compared on
//! every test run (set `STITCH_BLESS=1` to rewrite them after an intended change), and the size
//! budget of one stitch's expansion.

use quote::quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
    prettyplease::unparse(&file)
}

fn check_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("snapshots")
        .join(format!("{name}.expanded.rs"));
    if std::env::var_os("STITCH_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}: run with STITCH_BLESS=1",
            path.display()
        )
    });
    assert_eq!(
        expected, actual,
        "expansion of `{name}` changed; review it and rerun with STITCH_BLESS=1"
    );
}

/// The expansion without the trait itself: the trait is the user's declaration (its methods only
/// rewritten to return `impl Future + Send`, which the pretty-printer wraps over ~9 lines), while
/// the budget is about the code stitch adds: descriptors, the client, its method bodies.
fn generated(tokens: proc_macro2::TokenStream) -> String {
    let mut file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
    file.items
        .retain(|item| !matches!(item, syn::Item::Trait(_)));
    prettyplease::unparse(&file)
}

/// Lines a seam expansion grows by per stitch: a seam with two stitches minus one with one.
fn lines_per_stitch(first: proc_macro2::TokenStream, second: proc_macro2::TokenStream) -> usize {
    let one = generated(crate::expand::seam(
        quote!(base_url = "https://api.example.com"),
        quote!(trait Acme { #first }),
    ));
    let two = generated(crate::expand::seam(
        quote!(base_url = "https://api.example.com"),
        quote!(trait Acme { #first #second }),
    ));
    two.lines().count() - one.lines().count()
}

#[test]
fn seam_expansion_snapshot() {
    let out = crate::expand::seam(
        quote!(
            base_url = "https://api.example.com",
            throttle(rate = "2/s", concurrency = 4, pool = "host")
        ),
        quote! {
            trait Acme {
                #[stitch(get, path = "/users/{id}", cache = "5m", pick = "data")]
                async fn user(&self, id: u64, #[query] fields: Option<&str>) -> stitch::Result<User>;
                #[stitch(post, path = "/users", retry = 3, idempotency)]
                async fn create(&self, #[body] user: NewUser) -> stitch::Result<stitch::Response<User>>;
            }
        },
    );
    check_snapshot("seam", &pretty(out));
}

#[test]
fn free_fn_expansion_snapshot() {
    let out = crate::expand::stitch(
        quote!(
            get,
            url = "https://status.example.com/health",
            timeout = "2s"
        ),
        quote!(
            pub async fn health(#[header("x-probe")] probe: &str) -> stitch::Result<String>;
        ),
    );
    check_snapshot("free_fn", &pretty(out));
}

#[test]
fn one_stitch_stays_small() {
    // A typical read: a path argument, a query argument, `pick`, cache.
    let typical = lines_per_stitch(
        quote! {
            #[stitch(get, path = "/users/{id}", pick = "data")]
            async fn user(&self, id: u64, #[query] fields: Option<&str>) -> stitch::Result<User>;
        },
        quote! {
            #[stitch(get, path = "/teams/{id}", pick = "data", cache = "5m")]
            async fn team(&self, id: u64, #[query] fields: Option<&str>) -> stitch::Result<Team>;
        },
    );
    println!("generated lines per stitch: {typical}");
    assert!(
        typical <= 20,
        "a stitch expands to {typical} lines; the budget is a descriptor plus one call"
    );
}
