//! cairn's repository format, as bytes.
//!
//! This crate knows how every object in a cairn repository is laid out, and nothing about where
//! objects are kept: no file system, no network, no async. Every decoder is a total function over
//! bytes that returns a typed [`Error`], and each has a fuzz target in `fuzz/`.
//!
//! The normative description is `format/SPEC.md`; each module maps to one of its sections
//! (`bbolt` reads etcd snapshots, whose facts SPEC §10.1 lists).

pub mod bbolt;
mod bounded;
pub mod chunker;
pub mod config;
pub mod content_list;
pub mod envelope;
mod error;
pub mod frame;
pub mod gc;
pub mod id;
pub mod index;
pub mod keys;
pub mod pack;
pub mod payload;
pub mod record;
pub mod snapshot;
pub mod tree;

pub use error::Error;
pub use id::{ChunkIdKey, Id};

/// The repository format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;

/// Largest blob (chunk or tree) cairn writes or accepts, in bytes.
pub const MAX_BLOB_LEN: u32 = 16 << 20;

/// Largest uncompressed frame accepted, in bytes.
pub const MAX_FRAME_LEN: u32 = 16 << 20;
