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
