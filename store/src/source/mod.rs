//! Sources: what a backup reads. `fs` walks host paths (with `meta` for their metadata),
//! `etcd` streams a member's snapshot (checked by `trailer` and `bbolt_facts`), `static_pods`
//! picks the latest static pod revisions. Host presets ([`crate::host`]) and project exports
//! ([`crate::project`]) build on them.

pub mod bbolt_facts;
pub mod etcd;
pub mod fs;
pub mod meta;
pub mod static_pods;
pub mod trailer;

use std::path::PathBuf;
use thiserror::Error;

/// A source that cannot be read as what it should be.
#[derive(Debug, Error)]
pub enum SourceError {
    /// A file given as an etcd snapshot is not one.
    #[error("{} {why}", path.display())]
    NotBbolt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The etcd snapshot stream failed while it was read.
    #[error("reading the etcd snapshot ({read} bytes read); nothing was saved: {cause}")]
    EtcdUnreadable {
        /// Bytes read before the failure.
        read: u64,
        /// The failure.
        cause: std::io::Error,
    },
    /// The side thread checking the stream stopped early.
    #[error("the snapshot's sha256 check stopped before the end of the stream; nothing was saved")]
    CheckStopped,
    /// The stream is not a bbolt database.
    #[error("{what} is not a readable etcd database: {cause}; nothing was saved")]
    NotEtcd {
        /// What was read.
        what: String,
        /// What is wrong with it.
        cause: String,
    },
    /// The sha256 trailer does not match.
    #[error("{}", if *file { "the snapshot file has no valid sha256 trailer: it was not written by `etcdctl snapshot save`, or it is damaged or truncated; nothing was saved. Pass --skip-hash-check to keep it anyway" } else { "the sha256 trailer of the snapshot stream does not match its content: the stream was corrupted or cut short; nothing was saved" })]
    BadTrailer {
        /// Whether it was a file (else a live stream).
        file: bool,
    },
    /// No static pod revision directory.
    #[error("no <component>-pod-<revision> directory in {}; is this a control-plane host?", .0.display())]
    NoStaticPods(PathBuf),
    /// `/` named as a whole.
    #[error("backing up / as a whole is not supported; name the directories to keep")]
    WholeRoot,
    /// etcd could not be reached or read.
    #[error(transparent)]
    Etcd(#[from] etcd::EtcdError),
}
