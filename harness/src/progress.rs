//! Progress for a person at a terminal: bars and spinners drawn by `tracing-indicatif` below
//! the log, which prints above them without tearing. Where stderr is not a terminal (a pipe, a
//! CI log, the tests) nothing is drawn and the log stays plain text.

use std::io::IsTerminal;

use tracing::Span;
use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::filter::IndicatifFilter;
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_indicatif::style::ProgressStyle;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

const SPINNER: &str = "{spinner:.cyan} {elapsed:>4} {wide_msg}";
const BAR: &str = "{spinner:.cyan} {elapsed:>4} [{bar:24.cyan/blue}] {pos}/{len} {wide_msg}";

/// Installs the global subscriber: log lines on stderr, at a terminal in colour and above the
/// progress bars.
pub fn init_logging(filter: EnvFilter) {
    let tty = std::io::stderr().is_terminal();
    let log = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(tty)
        .with_timer(tracing_subscriber::fmt::time::uptime());
    if tty {
        let bars = IndicatifLayer::new();
        // The filter is the log's alone: `HADRILL_LOG=warn` quietens the log, not the bars.
        tracing_subscriber::registry()
            .with(
                log.with_writer(bars.get_stderr_writer())
                    .with_filter(filter),
            )
            // Only the spans made here get a bar, not every span of every library.
            .with(bars.with_filter(IndicatifFilter::new(false)))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(log.with_writer(std::io::stderr).with_filter(filter))
            .init();
    }
}

/// A spinner or bar for one long task, removed when dropped. Without bars (not a terminal, or
/// no subscriber as in the tests) it draws nothing.
pub struct Progress {
    span: Span,
    what: String,
    shown: bool,
}

impl Progress {
    /// A spinner for a task of unknown length.
    pub fn spinner(what: impl Into<String>) -> Self {
        Self::start(what.into(), SPINNER, None)
    }

    /// A bar over `len` units of work.
    pub fn bar(what: impl Into<String>, len: usize) -> Self {
        Self::start(what.into(), BAR, Some(len as u64))
    }

    fn start(what: String, template: &str, len: Option<u64>) -> Self {
        // No parent: a bar stands alone whatever span the caller is in.
        let span = tracing::info_span!(
            parent: None,
            "progress",
            indicatif.pb_show = tracing::field::Empty
        );
        span.pb_set_style(&ProgressStyle::with_template(template).expect("a valid template"));
        if let Some(len) = len {
            span.pb_set_length(len);
        }
        span.pb_set_message(&what);
        span.pb_start();
        let shown = tracing_indicatif::writer::get_indicatif_stderr_writer().is_some();
        Progress { span, what, shown }
    }

    /// Whether it is drawn: callers that log in its stead when it is not ask this.
    pub fn shown(&self) -> bool {
        self.shown
    }

    /// Shows `detail` after the task's name.
    pub fn set_message(&self, detail: &str) {
        self.span
            .pb_set_message(&format!("{}: {detail}", self.what));
    }

    /// Shows `detail` on the bar (and in the debug log), or logs it where there is no bar.
    pub fn status(&self, detail: &str) {
        if self.shown {
            self.set_message(detail);
            tracing::debug!("{}: {detail}", self.what);
        } else {
            tracing::info!("{}: {detail}", self.what);
        }
    }

    pub fn inc(&self) {
        self.span.pb_inc(1);
    }

    pub fn set_position(&self, pos: u64) {
        self.span.pb_set_position(pos);
    }
}
