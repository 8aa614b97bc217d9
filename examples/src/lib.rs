//! Runnable examples of stitch; see `quickstart.rs`.
