//! Progress of long work, counted in bytes, for whoever shows it (the CLI draws a bar on a
//! terminal; the daemon shows nothing).

use std::fmt;
use std::sync::Arc;

/// Where progress goes.
pub trait Show: Send + Sync {
    /// `n` more bytes are done.
    fn bytes(&self, n: u64);
    /// A short note on where the work is ("1200 files").
    fn message(&self, text: String);
    /// The work is over: stop showing it.
    fn done(&self) {}
}

/// A cheap, clonable handle that work reports to. [`Progress::none`] reports nowhere.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Show>>);

impl Progress {
    /// Report to `show`.
    pub fn new(show: impl Show + 'static) -> Progress {
        Progress(Some(Arc::new(show)))
    }

    /// Report to nobody.
    pub fn none() -> Progress {
        Progress(None)
    }

    /// `n` more bytes are done.
    pub fn inc(&self, n: u64) {
        if let Some(s) = &self.0 {
            s.bytes(n);
        }
    }

    /// Set the note shown beside the count.
    pub fn set_message(&self, text: String) {
        if let Some(s) = &self.0 {
            s.message(text);
        }
    }
}

impl Progress {
    /// The work is over.
    pub fn done(&self) {
        if let Some(s) = &self.0 {
            s.done();
        }
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress"
        } else {
            "Progress(none)"
        })
    }
}
