//! cairn's repository: where bytes are kept, and the repository built over them.
//!
//! [`backend`] keeps objects (local disk and NFS here; S3 behind the same trait), [`repo`]
//! opens and initialises repositories and holds the key roles, [`index`] maps blobs to packs,
//! [`saver`] and [`loader`] are the write and read pipelines, [`snapshots`] lists and resolves
//! snapshots and [`trees`] walks them. No command-line concerns live here.

pub mod backend;
pub mod blob_set;
pub mod check;
pub mod content_lists;
pub mod copy;
mod error;
pub mod footprint;
pub mod host;
pub mod index;
pub mod job;
pub mod keys;
pub mod lease;
pub mod loader;
pub mod object_lock;
pub mod pages;
pub mod plain;
pub mod policy;
pub mod project;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod retention;
pub mod saver;
pub mod snapshots;
pub mod trees;

pub use error::{ConfigError, Error, Result};
pub use repo::{Credentials, InitOptions, Repository, Role};
