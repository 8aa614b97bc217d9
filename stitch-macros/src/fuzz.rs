//! The macros never panic: thousands of generated, mostly malformed attribute inputs for
//! `#[stitch]`, `#[seam]` and the argument attributes, expanded inside `catch_unwind`. Every input
//! must expand to a parsable file (errors plus the item, so the user's crate keeps type-checking),
//! and every input with a known defect must produce a `compile_error!`.
//!
//! Deterministic: a small xorshift generator with fixed seeds, so a failure names its case and
//! reproduces on every run.

use proc_macro2::TokenStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: enough variety for input generation, no dependency.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Keys of nested lists that have no list of their own in the model (`circuit(...)`,
/// `idempotency(...)`, `timeout(...)`, the argument attributes), and near misses.
const OTHER_KEYS: &[&str] = &[
    "failures", "cooldown", "header", "from", "total", "each", "json", "form", "secret", "bogus",
    "pth", "r#type", "self", "_",
];

/// Every key the attributes know, at any level, taken from the model's own lists so the fuzzer
/// follows every key added there, plus [`OTHER_KEYS`].
fn keys() -> Vec<&'static str> {
    use crate::model::{CACHE_KEYS, RETRY_KEYS, SEAM_KEYS, STITCH_KEYS, THROTTLE_KEYS};
    let mut all: Vec<&'static str> = [
        STITCH_KEYS,
        SEAM_KEYS,
        CACHE_KEYS,
        THROTTLE_KEYS,
        RETRY_KEYS,
        OTHER_KEYS,
    ]
    .concat();
    all.sort_unstable();
    all.dedup();
    all
}

/// Every literal kind, in sizes and shapes that have broken parsers before.
fn literal(rng: &mut Rng) -> String {
    const FIXED: &[&str] = &[
        "\"\"",
        "\"5m\"",
        "\"1.5s\"",
        "\"-1s\"",
        "\"0s\"",
        "\"99999999999999999999999d\"",
        "\"2/s\"",
        "\"1/213504d\"",
        "\"0/s\"",
        "\"/users/{id}\"",
        "\"/users/{self}\"",
        "\"/a/{\"",
        "\"/a/}\"",
        "\"/a?x=1\"",
        "\"https://\"",
        "\"https://api example.com/x\"",
        "\"https://api.example.com\"",
        "\"ftp://x\"",
        "\"acme-client\"",
        "\"Acme Client\"",
        "\"fn\"",
        "\"r#type\"",
        "\"AcmeApi\"",
        "\"authorization\"",
        "\"x\\ny\"",
        "\"é\"",
        "\"{}\"",
        "\"app\"",
        "\"host\"",
        "\"data..items\"",
        "\"expo-jitter\"",
        "\"type\"",
        "0",
        "1",
        "5",
        "-1",
        "429",
        "4294967296",
        "99999999999999999999999999999999",
        "5u32",
        "\"x\"suffix",
        "1.5",
        "1e9",
        "true",
        "false",
        "'c'",
        "b'c'",
        "b\"bytes\"",
        "c\"c\"",
        "r\"raw\"",
        "r#\"raw\"#",
        "[]",
        "[429, 503]",
        "[\"accept\"]",
        "[1, \"a\"]",
        "a + b",
        "a::b",
        "x",
        "()",
        "{}",
        "[[]]",
    ];
    match rng.below(10) {
        0 => format!("\"{}\"", "a".repeat(rng.below(20_000))),
        1 => format!("\"{}\"", "{x}".repeat(rng.below(500))),
        _ => rng.pick(FIXED).to_owned(),
    }
}

/// A comma-separated list of entries, possibly truncated, with duplicates and nesting.
/// Returns the text and whether a defect is certain (so an error must be reported).
fn entries(rng: &mut Rng, depth: usize) -> (String, bool) {
    let mut out = Vec::new();
    let mut defect = false;
    for _ in 0..rng.below(6) {
        let key = rng.pick(&keys());
        let entry = match rng.below(if depth < 3 { 5 } else { 3 }) {
            0 => key.to_owned(),
            1 | 2 => format!("{key} = {}", literal(rng)),
            _ => {
                let (inner, inner_defect) = entries(rng, depth + 1);
                defect |= inner_defect;
                format!("{key}({inner})")
            }
        };
        if key == "bogus" || key == "pth" {
            defect = true;
        }
        out.push(entry);
    }
    if rng.chance(10) && !out.is_empty() {
        // The same entry twice: a duplicate key (or a conflicting method flag).
        let again = out[rng.below(out.len())].clone();
        out.push(again);
        defect = true;
    }
    let mut text = out.join(", ");
    match rng.below(8) {
        // Truncated: a dangling `=`, a dangling comma, a lone key path.
        0 => {
            text.push_str(", ttl =");
            defect = true;
        }
        1 => text.push_str(", "),
        2 => {
            text.push_str(" = = ");
            defect = true;
        }
        _ => {}
    }
    (text, defect)
}

/// A valid attribute with a few valid options, and sometimes one random entry: reaches the model's
/// later stages and the expansion itself, which fully random input rarely passes.
fn mostly_valid(rng: &mut Rng) -> (String, bool) {
    const OPTIONS: &[&str] = &[
        "cache = \"5m\"",
        "cache(ttl = \"5m\", vary = [\"accept-language\"], max_entries = 10)",
        "pick = \"data\"",
        "throttle(rate = \"2/s\", burst = 2, concurrency = 3)",
        "throttle = \"10/m\"",
        "retry(attempts = 3, on = [503], backoff = \"expo\", base = \"10ms\", max = \"1s\")",
        "timeout(total = \"10s\", each = \"2s\")",
        "timeout = \"5s\"",
        "name = \"fetch\"",
        "headers(\"accept\" = \"application/json\")",
        "circuit(failures = 5, cooldown = \"30s\")",
        "sensitive",
        "base_url = \"http://localhost:1\"",
    ];
    let mut out = vec![
        rng.pick(&["get", "head", "delete"]).to_owned(),
        "path = \"/users/{id}\"".to_owned(),
    ];
    for _ in 0..rng.below(4) {
        let option = rng.pick(OPTIONS);
        if !out
            .iter()
            .any(|o| o.split(['=', '(']).next() == option.split(['=', '(']).next())
        {
            out.push(option.to_owned());
        }
    }
    let mut defect = false;
    if rng.chance(40) {
        let (extra, extra_defect) = entries(rng, 1);
        if !extra.trim().is_empty() {
            out.push(extra);
            defect = extra_defect;
        }
    }
    (out.join(", "), defect)
}

fn valid_signature(rng: &mut Rng, receiver: bool) -> String {
    let mut args = vec!["id: u64".to_owned()];
    if receiver {
        args.insert(0, "&self".to_owned());
    }
    for (i, attr) in [
        "#[query]",
        "#[query(\"k\", secret)]",
        "#[header(\"x-a\")]",
        "#[header(\"api-key\")]",
        "#[query(secret)]",
    ]
    .iter()
    .enumerate()
    {
        if rng.chance(30) {
            args.push(format!("{attr} a{i}: &str"));
        }
    }
    if rng.chance(20) {
        args.push(format!("{} extra: u8", arg_attr(rng)));
    }
    let ret = rng.pick(&[
        "User",
        "String",
        "()",
        "stitch::Response<User>",
        "Vec<User>",
    ]);
    format!("async fn m({}) -> stitch::Result<{ret}>;", args.join(", "))
}

/// An argument attribute: `#[query(...)]`, `#[header(...)]`, `#[body(...)]` with any content.
fn arg_attr(rng: &mut Rng) -> String {
    let name = rng.pick(&["query", "header", "body"]);
    let inner = match rng.below(6) {
        0 => String::new(),
        1 => literal(rng),
        2 => format!("{}, secret", literal(rng)),
        3 => rng
            .pick(&[
                "secret",
                "form",
                "json",
                "secret, secret",
                "x",
                "\"a\" \"b\"",
            ])
            .to_owned(),
        _ => entries(rng, 2).0,
    };
    match rng.below(4) {
        0 => format!("#[{name}]"),
        1 => format!("#[{name} = {}]", literal(rng)),
        _ => format!("#[{name}({inner})]"),
    }
}

fn signature(rng: &mut Rng, receiver: bool) -> String {
    let generics = rng.pick(&["", "", "", "<'a>", "<T>", "<T: Clone>"]);
    let mut args = Vec::new();
    if receiver {
        args.push(
            rng.pick(&["&self", "&self", "self", "&mut self"])
                .to_owned(),
        );
    }
    for name in ["id", "r#type", "q", "self_"].iter().take(rng.below(5)) {
        let attr = if rng.chance(60) {
            arg_attr(rng)
        } else {
            String::new()
        };
        let ty = rng.pick(&[
            "u64",
            "&str",
            "Vec<u8>",
            "impl AsRef<str>",
            "&'a str",
            "(u8, u8)",
            "T",
        ]);
        args.push(format!("{attr} {name}: {ty}"));
    }
    let ret = rng.pick(&[
        "-> stitch::Result<User>",
        "-> stitch::Result<String>",
        "-> stitch::Result<()>",
        "-> stitch::Result<stitch::Response<String>>",
        "-> stitch::Result<Response<User>>",
        "-> Result<User, E>",
        "-> User",
        "",
    ]);
    let clause = rng.pick(&["", "", "where T: Clone"]);
    let asyncness = rng.pick(&["async ", "async ", ""]);
    format!(
        "{asyncness}fn m{generics}({}) {ret} {clause};",
        args.join(", ")
    )
}

/// The `(input, outcome)` of one expansion, or the panic message.
fn run(f: impl FnOnce() -> TokenStream) -> Result<String, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map(|tokens| tokens.to_string())
        .map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        })
}

#[test]
fn attribute_fuzz_never_panics_and_always_reports() {
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut accepted = 0;
    for seed in 1..=3_000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let structured = seed % 2 == 0;
        let (attr, defect) = if structured {
            mostly_valid(&mut rng)
        } else {
            entries(&mut rng, 0)
        };
        let (seam_attr, seam_defect) = if structured && rng.chance(70) {
            (
                "base_url = \"https://api.example.com\", timeout = \"30s\"".to_owned(),
                false,
            )
        } else {
            entries(&mut rng, 0)
        };
        let (free, method) = if structured {
            (
                valid_signature(&mut rng, false),
                valid_signature(&mut rng, true),
            )
        } else {
            (signature(&mut rng, false), signature(&mut rng, true))
        };
        let (Ok(attr_tokens), Ok(seam_tokens), Ok(free_tokens), Ok(trait_tokens)) = (
            TokenStream::from_str(&attr),
            TokenStream::from_str(&seam_attr),
            TokenStream::from_str(&free),
            TokenStream::from_str(&format!("trait Acme {{ #[stitch({attr})] {method} }}")),
        ) else {
            // Not lexable as Rust tokens: rustc would reject it before any macro runs.
            continue;
        };
        let expansions = [
            ("stitch", defect, {
                let (a, i) = (attr_tokens.clone(), free_tokens);
                run(move || crate::expand::stitch(a, i))
            }),
            ("seam", defect || seam_defect, {
                let (a, i) = (seam_tokens, trait_tokens);
                run(move || crate::expand::seam(a, i))
            }),
        ];
        for (which, defect, outcome) in expansions {
            cases += 1;
            if matches!(&outcome, Ok(out) if !out.contains("compile_error")) {
                accepted += 1;
            }
            let problem = match &outcome {
                Err(panic) => Some(format!("panicked: {panic}")),
                Ok(out) if syn::parse_str::<syn::File>(out).is_err() => {
                    Some("the expansion is not a parsable file".to_owned())
                }
                Ok(out) if defect && !out.contains("compile_error") => {
                    Some("a defective input expanded without an error".to_owned())
                }
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                failures.push(format!(
                    "seed {seed}, #[{which}]: {problem}\n  attr: {}\n  seam attr: {seam_attr}\n  fn: {free}\n  method: {method}",
                    attr.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    assert!(cases > 4_000, "only {cases} cases ran");
    // The generator must reach the expansion itself, not only the early errors.
    assert!(
        accepted > cases / 20,
        "only {accepted} of {cases} inputs were accepted"
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} expansions failed; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Inputs that panicked before this test existed, kept by name.
#[test]
fn known_panics_are_errors() {
    for client in [
        "\"acme-client\"",
        "\"\"",
        "\"Acme Client\"",
        "\"fn\"",
        "\"1st\"",
    ] {
        let out = run(|| {
            crate::expand::seam(
                TokenStream::from_str(&format!("client = {client}")).unwrap_or_default(),
                quote::quote!(
                    trait Acme {}
                ),
            )
        })
        .unwrap_or_else(|panic| panic!("`client = {client}` panicked: {panic}"));
        assert!(
            out.contains("compile_error"),
            "`client = {client}` was accepted"
        );
    }
}
