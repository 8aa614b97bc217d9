//! Compile-time diagnostics of `#[stitch]` and `#[seam]`: each `ui/<topic>/<case>.rs` must fail to
//! compile with exactly the errors in its `.stderr`, and each `ui/pass/` case must build and run.
//! Regenerate the expectations with `TRYBUILD=overwrite cargo test -p stitch-ui-tests`, then read
//! every changed `.stderr`: an error must point at the offending token.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    for topic in [
        "args",
        "auth",
        "cache",
        "fingerprint",
        "path",
        "resilience",
        "roles",
        "seam",
        "secret",
        "signature",
        "throttle",
        "timeout",
    ] {
        t.compile_fail(format!("tests/ui/{topic}/*.rs"));
    }
    t.pass("tests/ui/pass/*.rs");
}
