//! The bbolt facts cairn records for an etcd snapshot: what `etcdctl snapshot status` prints.

use super::SourceError;
use crate::Result;
use cairn_format::bbolt::SnapshotStatus;
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

/// A cheap first look, before anything is stored: does the file start with a bbolt meta page
/// (magic 0xED0CDAED, little-endian, after the 16-byte page header)? The full inspection runs
/// on the stream while it is chunked.
pub fn looks_like_bbolt(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut head = [0u8; 20];
    let not_bbolt = |why| SourceError::NotBbolt {
        path: path.to_path_buf(),
        why,
    };
    let mut file =
        std::fs::File::open(path).map_err(crate::Error::file("opening", path.display()))?;
    if file.read_exact(&mut head).is_err() {
        return Err(not_bbolt("is too short to be an etcd snapshot").into());
    }
    if head[16..20] != 0xED0C_DAEDu32.to_le_bytes() {
        return Err(not_bbolt("is not an etcd snapshot (no bbolt meta page at its start)").into());
    }
    Ok(())
}
