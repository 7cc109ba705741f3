//! The bbolt facts cairn records for an etcd snapshot: what `etcdctl snapshot status` prints.

use anyhow::{Context, Result};
use cairn_format::bbolt::{self, SnapshotStatus};
use std::path::Path;

/// The facts as snapshot key/value pairs.
pub fn facts(s: &SnapshotStatus) -> Vec<(String, String)> {
    vec![
        ("etcd.revision".into(), s.revision.to_string()),
        ("etcd.total_keys".into(), s.total_key.to_string()),
        ("etcd.total_size".into(), s.total_size.to_string()),
        ("etcd.hash".into(), format!("{:08x}", s.hash)),
    ]
}

/// Inspect the database file at `path` (total length `len`, trailer included if any).
pub fn from_file(path: &Path, len: u64) -> Result<Vec<(String, String)>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = std::io::BufReader::with_capacity(64 << 10, f);
    let status = bbolt::inspect(&mut r, len)
        .with_context(|| format!("{} is not a readable etcd database (bbolt)", path.display()))?;
    Ok(facts(&status))
}
