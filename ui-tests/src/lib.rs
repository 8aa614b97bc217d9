//! Compile-fail and pass cases for the stitch macros (see `tests/ui.rs`).
