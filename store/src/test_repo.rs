//! Test fixture: a local repository in a temporary directory, opened with its identity.

use crate::backend::LocalBackend;
use crate::repo::{Credentials, InitOptions};
use crate::Repository;
use std::path::Path;
use std::sync::Arc;

/// A new repository in `dir` for `id` with packs of `pack_size` bytes (None: the default),
/// opened with `id`.
pub fn create(dir: &Path, id: &age::x25519::Identity, pack_size: Option<u32>) -> Arc<Repository> {
    let defaults = InitOptions::default();
    Repository::init(
        Box::new(LocalBackend::new(dir)),
        InitOptions {
            recipients: vec![id.to_public().to_string()],
            pack_size: pack_size.unwrap_or(defaults.pack_size),
            ..defaults
        },
    )
    .unwrap();
    open(dir, id)
}

/// The repository in `dir`, opened with `id`.
pub fn open(dir: &Path, id: &age::x25519::Identity) -> Arc<Repository> {
    Arc::new(
        Repository::open(
            Box::new(LocalBackend::new(dir)),
            Credentials::Identities(vec![Box::new(id.clone())]),
        )
        .unwrap(),
    )
}

/// `len` incompressible bytes from the xorshift state `seed` (non-zero), which advances.
pub fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

/// Id number `n`, spread over the id space by its leading bytes and distinct for every `n`.
pub fn spread_id(n: u64) -> cairn_format::Id {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    b[24..].copy_from_slice(&n.to_be_bytes());
    cairn_format::Id(b)
}

/// Store a snapshot of `tree` (host "h", user "u", paths "/") taken at `time_ns`, with `stats`.
pub fn save_snapshot(
    repo: &Repository,
    tree: cairn_format::Id,
    time_ns: i64,
    stats: cairn_format::snapshot::SnapshotStats,
) -> cairn_format::Id {
    let snap = snapshot_of(tree, time_ns, stats);
    crate::snapshots::save(repo, &snap).expect("saving a test snapshot")
}

/// A snapshot of `tree` (host "h", user "u", paths "/") taken at `time_ns`, with `stats`.
pub fn snapshot_of(
    tree: cairn_format::Id,
    time_ns: i64,
    stats: cairn_format::snapshot::SnapshotStats,
) -> cairn_format::snapshot::Snapshot {
    cairn_format::snapshot::Snapshot {
        time_ns,
        host: "h".into(),
        username: "u".into(),
        source: cairn_format::snapshot::SourceKind::Paths,
        paths: vec!["/".into()],
        tags: Vec::new(),
        tree,
        parent: None,
        stats,
        program: "test".into(),
        facts: Vec::new(),
    }
}
