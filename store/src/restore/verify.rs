//! Restoring an etcd snapshot: check the database from the bytes written, read back behind
//! the writes (see [`super::follow`]), before it gets its name — its sha256 trailer, its size,
//! and the bbolt facts recorded at backup time.

use super::FileContent;
use super::RestoreError;
use crate::loader::Loader;
use crate::plain::Plain;
use crate::source::trailer::{BlockCheck, Verdict};
use crate::{Error, Result};
use cairn_format::snapshot::{Snapshot, SourceKind};
use std::fs::File;
use std::path::Path;

/// Where a tree restore of `snap` puts the etcd database it re-checks (etcd and cluster
/// snapshots): its path components below the target. None for other snapshots.
pub(crate) fn database(snap: &Snapshot) -> Option<Vec<Vec<u8>>> {
    if !matches!(snap.source, SourceKind::Etcd | SourceKind::Cluster) {
        return None;
    }
    let path = crate::trees::path_components(snap.fact("etcd.file")?);
    (!path.is_empty()).then_some(path)
}

/// The refusal to restore an etcd or cluster snapshot (`snap`) whose database (`path`) is not
/// in it: `repair snapshots` of an older cairn dropped it with a lost pack, or the snapshot was
/// planted. Restoring the rest and saying "restored" would pass for a recovery.
pub(super) fn no_database(snap: &Snapshot, path: &str, tree_layout: bool) -> crate::Error {
    let repaired = snap
        .fact(crate::repair::LOST_FACT)
        .map(|n| format!(" (`repair snapshots` removed {n} lost files from it)"))
        .unwrap_or_default();
    super::RestoreError::Refused {
        message: format!(
            "this {} snapshot holds no etcd database ({path} is not in it){repaired}; nothing was written",
            snap.source.name()
        ),
        hint: Some(format!(
            "restore another snapshot (`cairn snapshots --source {}`){}",
            snap.source.name(),
            if tree_layout {
                "; --include restores this one's other files"
            } else {
                ""
            }
        )),
    }
    .into()
}

/// Write an etcd database's `content` into `file` ([`super::blobs::write_content`]),
/// reading it back behind the writes into the sha256 trailer and bbolt checks. Returns the
/// bytes written and the check, for [`etcd_digest`].
pub(super) fn write_followed(
    loader: &mut Loader,
    file: &File,
    content: FileContent<'_>,
    progress: impl Fn(u64) + Sync,
) -> Result<(u64, BlockCheck<Plain>)> {
    let mut check = BlockCheck::new(true);
    let written = super::blobs::write_content(
        loader,
        file,
        content,
        progress,
        Some(&mut |piece| check.feed(&piece)),
    )?;
    Ok((written, check))
}

/// Compare what `check` (with inspection) learnt from the bytes of the restored database at
/// `path`, fed in file order, with what `snap` recorded. Returns what was checked.
pub fn etcd_digest<P: AsRef<[u8]> + Send + Sync + 'static>(
    path: &Path,
    snap: &Snapshot,
    check: BlockCheck<P>,
) -> Result<Vec<String>> {
    let len = check.fed();
    let digest = check.finish().ok_or(RestoreError::Worker(
        "a thread checking the restored database stopped",
    ))?;
    let mut checks = Vec::new();
    let unverified = |why: String| -> Error {
        RestoreError::Unverified {
            path: path.to_path_buf(),
            why,
        }
        .into()
    };
    if let Some(size) = snap.fact("etcd.size") {
        if len.to_string() != size {
            return Err(unverified(format!(
                "is {len} bytes, the backup recorded {size}"
            )));
        }
        checks.push("size".to_string());
    }
    match (snap.fact("etcd.sha256"), digest.verdict) {
        (Some("verified"), Verdict::Valid) => checks.push("sha256 trailer".to_string()),
        (Some("verified"), _) => {
            return Err(unverified(
                "fails its sha256 trailer check after restore: do not use it".into(),
            ))
        }
        _ => {}
    }
    let status = digest
        .bbolt
        .ok_or(RestoreError::Worker("the bbolt inspection did not run"))?
        .map_err(|e| unverified(format!("is not a readable etcd database (bbolt): {e}")))?;
    for (key, value) in &super::super::source::bbolt_facts::facts(&status) {
        if let Some(recorded) = snap.fact(key) {
            if recorded != value {
                return Err(unverified(format!(
                    "has {key} {value}, the backup recorded {recorded}: do not use it"
                )));
            }
            checks.push(key.clone());
        }
    }
    Ok(checks)
}

/// Warn when the cluster being restored is not on the z-stream release the backup came from,
/// or when the snapshot recorded no release to compare with.
pub fn cluster_version(snap: &Snapshot, target_version: Option<&str>) -> Option<String> {
    let target = target_version?;
    let Some(recorded) = snap.fact("cluster.version") else {
        return Some(format!(
            "the snapshot recorded no cluster version (not taken from a live OpenShift etcd, or --cluster-version was not given at backup), so it cannot be compared with {target}: make sure the backup comes from the same z-stream release"
        ));
    };
    let xyz = |v: &str| v.split(['-', '+']).next().unwrap_or(v).to_string();
    (xyz(recorded) != xyz(target)).then(|| {
        format!(
            "the backup was taken on cluster version {recorded}, the cluster being restored runs {target}: the platform supports restoring only a backup from the same z-stream release"
        )
    })
}
