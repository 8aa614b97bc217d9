//! What a `metrics-util` debugging recorder holds, keyed the way the tests name a series.

use metrics_util::debugging::{DebugValue, Snapshotter};
use std::collections::HashMap;

/// Every metric as `name{label=value,...}` (labels sorted) with its value.
pub fn metrics(recorder: &Snapshotter) -> HashMap<String, DebugValue> {
    recorder
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}
