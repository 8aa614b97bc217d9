// Doc comments and lint attributes are kept wherever Rust allows them: on the trait, its methods,
// free stitches and arguments; `#![deny(missing_docs, warnings)]` holds for the generated items.
#![deny(missing_docs, warnings)]
//! A crate whose every public item is documented.

/// The API.
#[stitch::seam(base_url = "https://api.example.com")]
#[allow(clippy::all)]
pub trait Api {
    /// Fetches a thing.
    #[doc = "More about the thing."]
    #[stitch(get, path = "/things/{id}")]
    #[allow(non_snake_case)]
    #[deny(unused_must_use)]
    async fn thing(&self, #[allow(non_snake_case)] id: u64, #[query] #[allow(non_snake_case)] Verbose: bool) -> stitch::Result<String>;
}

/// Checks the status.
#[stitch::stitch(get, url = "https://api.example.com/status")]
#[allow(clippy::all)]
#[deny(unused)]
pub async fn status(#[allow(unused_variables)] #[query] full: bool) -> stitch::Result<String>;

fn main() {}
