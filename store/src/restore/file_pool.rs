//! Small files written by a few threads while the walk goes on.
//!
//! Creating a file costs system calls whose time is mostly the file system's (create, write,
//! owner, mode, times, rename: ~100 µs each on ext4 under load), so a tree of thousands of
//! small files restores about as fast as one thread can make them. The walk hands each small
//! file (the directory it goes in, already open, and a temporary name) to a worker with its own
//! [`Loader`], and goes on. A directory's own metadata (its times change with every entry made
//! in it) is applied once the files in flight are done: the walk defers it, and every
//! [`DEFERRED`] directories (and at the end) waits for the workers and applies them in order.

use super::Report;
use crate::loader::Loader;
use crate::{Error, Result};
use cairn_format::tree::Node;
use crossbeam_channel::{bounded, Sender};
use rustix::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Directories whose metadata waits before the walk waits for the workers.
pub const DEFERRED: usize = 64;
/// Files queued ahead of the workers.
const QUEUE: usize = 64;
/// Files up to this size go to the workers; larger ones are written by the walk itself (with
/// every core, see [`super::content`]).
pub const SMALL: u64 = 1 << 20;

/// One file to write: into `dir` as `name`, through the temporary `tmp`.
pub struct Job {
    pub dir: Arc<OwnedFd>,
    pub tmp: String,
    pub node: Node,
    pub path: Vec<Vec<u8>>,
}

/// Writes one file with a worker's loader, adding what it did to the worker's report.
pub type WriteFile = dyn Fn(&mut Loader, &Job, &mut Report) -> Result<()> + Send + Sync;

#[derive(Default)]
struct State {
    pending: usize,
    error: Option<Error>,
    report: Report,
}

struct Shared {
    state: Mutex<State>,
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The workers.
pub struct Pool {
    tx: Option<Sender<Job>>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// `threads` workers, each with a loader from `fork`, writing with `write`.
    pub fn new(threads: usize, fork: impl Fn() -> Loader, write: Arc<WriteFile>) -> Pool {
        let (tx, rx) = bounded::<Job>(QUEUE);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        });
        let workers = (0..threads)
            .map(|_| {
                let (rx, shared, write, mut loader) =
                    (rx.clone(), shared.clone(), write.clone(), fork());
                std::thread::spawn(move || {
                    for job in rx {
                        let skip = shared.lock().error.is_some();
                        let mut report = Report::default();
                        let result = if skip {
                            Ok(())
                        } else {
                            write(&mut loader, &job, &mut report)
                                .map_err(|e| super::entry_error(&job.path, e))
                        };
                        let mut s = shared.lock();
                        s.pending -= 1;
                        match result {
                            Ok(()) => s.report.merge(report),
                            Err(e) => {
                                s.error.get_or_insert(e);
                            }
                        }
                        shared.done.notify_all();
                    }
                })
            })
            .collect();
        Pool {
            tx: Some(tx),
            shared,
            workers,
        }
    }

    /// Queue a file; fails with a worker's error, if one failed.
    pub fn submit(&self, job: Job) -> Result<()> {
        {
            let mut s = self.shared.lock();
            if let Some(e) = s.error.take() {
                return Err(e);
            }
            s.pending += 1;
        }
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if !sent {
            self.shared.lock().pending -= 1;
            return Err(super::RestoreError::Worker("the restore workers stopped").into());
        }
        Ok(())
    }

    /// Wait until every queued file is written; what they did goes into `report`.
    pub fn wait(&self, report: &mut Report) -> Result<()> {
        let mut s = self.shared.lock();
        while s.pending > 0 {
            s = self.shared.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        report.merge(std::mem::take(&mut s.report));
        match s.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        drop(self.tx.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
