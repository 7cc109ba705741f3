//! cairn's repository: where bytes are kept, and the repository built over them.
//!
//! [`backend`] keeps objects (local disk and NFS here; S3 behind the same trait), [`repo`]
//! opens and initialises repositories and holds the key roles, [`index`] maps blobs to packs,
//! [`saver`] and [`loader`] are the write and read pipelines, [`snapshots`] lists and resolves
//! snapshots and [`trees`] walks them.
//!
//! Over them sits the engine the command line, `cairn run` and the daemon share: [`source`]
//! reads what is backed up (host paths, etcd, static pods; [`host`] and [`project`] build
//! on it), [`backup`] turns a source into a snapshot, [`restore`] writes one back and checks
//! it, [`check`], [`prune`], [`copy`] and [`repair`] keep the repository, [`job`] runs
//! configured jobs on schedule. Progress goes through [`progress`]; no command-line concerns
//! (arguments, printing, exit codes) live here.

pub mod backend;
pub mod backup;
pub mod blob_set;
pub mod check;
pub mod content_lists;
pub mod copy;
pub mod diff;
mod disk_space;
pub mod entry_file;
mod error;
pub mod footprint;
pub mod forget;
pub mod host;
pub mod id_file;
pub mod id_set;
pub mod index;
pub mod job;
pub mod keys;
pub mod lease;
pub mod loader;
pub mod object_lock;
pub mod pack_entries;
mod pack_sink;
pub mod pack_spans;
mod pack_stream;
pub mod pages;
pub mod partial_index;
pub mod pending;
pub mod plain;
pub mod policy;
pub mod progress;
pub mod project;
pub mod prune;
pub mod record_sort;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod saver;
pub mod snapshots;
pub mod source;
pub mod summary_file;
#[cfg(test)]
mod test_repo;
pub mod trees;
mod writeback;

pub use error::{ConfigError, Error, Result};
pub use repo::{Credentials, InitOptions, Repository, Role};
