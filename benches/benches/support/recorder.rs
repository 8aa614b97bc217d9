//! A `metrics` recorder with an exporter's recording core (metrics-util's `Registry` with atomic
//! storage, what metrics-exporter-prometheus records into), for measuring stitch's per-call
//! metrics when something records them. Shared by the `overhead` bench and the `probe` example.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// Registers every metric in an atomic registry; descriptions are ignored.
pub struct AtomicRecorder(Registry<Key, AtomicStorage>);

impl AtomicRecorder {
    /// Installs a new one as the process's global recorder.
    pub fn install() {
        metrics::set_global_recorder(AtomicRecorder(Registry::atomic()))
            .expect("the only recorder");
    }
}

impl metrics::Recorder for AtomicRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}
