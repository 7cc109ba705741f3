//! The bbolt facts cairn records for an etcd snapshot (what `etcdutl snapshot status` prints).

use anyhow::Result;
use std::path::Path;

/// Facts from the database file at `path` whose total length (with any trailer) is `len`.
/// Empty until the bbolt inspector is wired in.
pub fn from_file(_path: &Path, _len: u64) -> Result<Vec<(String, String)>> {
    Ok(Vec::new())
}
