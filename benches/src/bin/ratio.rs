//! Prints the medians criterion estimated for two benchmarks of one group and their ratio.
//!
//! ```text
//! cargo run -p stitch-benches --bin ratio [-- [CRITERION_DIR] [GROUP] [NUMERATOR] [DENOMINATOR]]
//! ```
//!
//! Defaults: `$CARGO_TARGET_DIR/criterion` (or the workspace's `target/criterion`), group
//! `overhead`, `stitch` over `hand`. Reads `<dir>/<group>/<bench>/new/estimates.json`, i.e. the
//! latest `cargo bench` run.
//!
//! If the bench also left `<dir>/<group>/paired.json` (per-sample times of both clients, measured
//! alternately within each sample), prints the median of the per-sample ratios too: the figure
//! least affected by load drifting between the two benches.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The issue's goal for the per-call overhead.
const GOAL: f64 = 1.03;

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
    mean: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    /// Nanoseconds.
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Deserialize)]
struct Interval {
    confidence_level: f64,
    lower_bound: f64,
    upper_bound: f64,
}

/// `paired.json`, written by the bench: per sample, the time of `iters` calls of each client.
#[derive(Deserialize)]
struct Paired {
    samples: Vec<PairedSample>,
}

#[derive(Deserialize)]
struct PairedSample {
    iters: u64,
    stitch_ns: u64,
    hand_ns: u64,
}

fn estimates_path(dir: &Path, group: &str, bench: &str) -> PathBuf {
    dir.join(group)
        .join(bench)
        .join("new")
        .join("estimates.json")
}

fn read(path: &Path) -> Result<Estimates, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (run `cargo bench -p stitch-benches --bench overhead` first)",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not criterion's format: {e}", path.display()))
}

/// The `q`-quantile (0..=1) of sorted values, by linear interpolation.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64)
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// Prints the per-sample pairs of `paired.json`, if the bench wrote them in the same run as the
/// estimates; returns the median of the per-sample ratios.
fn paired(dir: &Path, group: &str, estimates: &[PathBuf]) -> Option<f64> {
    let path = dir.join(group).join("paired.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let written = modified(&path)?;
    // The bench writes it after the whole group; a run of only one bench leaves it stale.
    if estimates
        .iter()
        .any(|e| modified(e).is_some_and(|m| m > written))
    {
        eprintln!(
            "ignoring {}: older than the estimates (run the whole group)",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let paired: Paired = match serde_json::from_str(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ignoring {}: {e}", path.display());
            return None;
        }
    };
    if paired.samples.is_empty() {
        return None;
    }
    let per_call = |ns: fn(&PairedSample) -> u64| {
        sorted(
            paired
                .samples
                .iter()
                .map(|s| ns(s) as f64 / s.iters as f64)
                .collect(),
        )
    };
    let stitch = per_call(|s| s.stitch_ns);
    let hand = per_call(|s| s.hand_ns);
    let ratios = sorted(
        paired
            .samples
            .iter()
            .map(|s| s.stitch_ns as f64 / s.hand_ns as f64)
            .collect(),
    );
    println!(
        "paired samples ({} samples, both clients alternated within each sample)",
        ratios.len()
    );
    println!(
        "  stitch   median {}   hand median {}",
        micros(quantile(&stitch, 0.5)),
        micros(quantile(&hand, 0.5))
    );
    let ratio = quantile(&ratios, 0.5);
    println!(
        "  median of per-sample ratios stitch/hand: {ratio:.4}   (quartiles {:.4} .. {:.4})",
        quantile(&ratios, 0.25),
        quantile(&ratios, 0.75)
    );
    Some(ratio)
}

fn micros(ns: f64) -> String {
    format!("{:.3} µs", ns / 1e3)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("criterion")
    });
    let group = args.next().unwrap_or_else(|| "overhead".into());
    let num = args.next().unwrap_or_else(|| "stitch".into());
    let den = args.next().unwrap_or_else(|| "hand".into());

    let paths = [&num, &den].map(|bench| estimates_path(&dir, &group, bench));
    let (a, b) = match (read(&paths[0]), read(&paths[1])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };

    let level = a.median.confidence_interval.confidence_level * 100.0;
    println!("group `{group}` (criterion estimates, {level:.0}% confidence intervals)");
    for (name, e) in [(&num, &a), (&den, &b)] {
        let m = &e.median;
        println!(
            "  {name:<8} median {}  [{} .. {}]   mean {}",
            micros(m.point_estimate),
            micros(m.confidence_interval.lower_bound),
            micros(m.confidence_interval.upper_bound),
            micros(e.mean.point_estimate),
        );
    }
    let ratio = a.median.point_estimate / b.median.point_estimate;
    // Extremes of the two intervals: a conservative range, not a proper interval of the ratio.
    let low = a.median.confidence_interval.lower_bound / b.median.confidence_interval.upper_bound;
    let high = a.median.confidence_interval.upper_bound / b.median.confidence_interval.lower_bound;
    println!("  ratio {num}/{den} of medians: {ratio:.4}   (interval ends: {low:.4} .. {high:.4})");
    println!(
        "  difference of medians: {}",
        micros(a.median.point_estimate - b.median.point_estimate)
    );
    // The two medians come from different stretches of time: load that changes between them is
    // in neither interval. The paired ratio (same samples, alternated calls) does not suffer
    // from it, so it decides when the bench wrote it.
    let verdict = |ratio: f64| if ratio <= GOAL { "met" } else { "NOT met" };
    match paired(&dir, &group, &paths) {
        Some(paired) => println!("goal ≤ {GOAL} (paired ratio): {}", verdict(paired)),
        None => println!(
            "goal ≤ {GOAL} (ratio of medians; no paired.json): {} (drift between the two \
             benches is not in the intervals)",
            verdict(ratio)
        ),
    }
    ExitCode::SUCCESS
}
