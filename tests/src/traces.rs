//! What tracing saw, for the tests that prove a secret never reaches a trace: a layer capturing
//! every field of every span and event at every level, and one text of an error's every form.

use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Everything tracing saw: every field of every span and event, at every level, one
/// `name=value` line each.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<String>>);

impl Capture {
    /// Captures what this thread traces until the guard is dropped (a current-thread tokio
    /// runtime's tasks included).
    pub fn on_this_thread() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let guard = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(
                capture
                    .clone()
                    .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
            ),
        );
        (capture, guard)
    }

    /// Captures what the whole process traces; the first call installs it (it must be the
    /// only global subscriber of the test binary), later calls return the same capture.
    pub fn process_wide() -> &'static Capture {
        static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
        CAPTURE.get_or_init(|| {
            let capture = Capture::default();
            let layer = capture
                .clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("the only subscriber of this test binary");
            capture
        })
    }

    /// The text captured so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, line: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(&line);
    }
}

impl Visit for Capture {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(format!("{}={:?}\n", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(format!("{}={}\n", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        attrs.record(&mut self.clone());
    }
    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: Context<'_, S>,
    ) {
        values.record(&mut self.clone());
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        event.record(&mut self.clone());
    }
}

/// `error`'s `Display`, `Debug` and every source's, in one text.
pub fn everything(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{error}\n{error:?}\n");
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    text
}
