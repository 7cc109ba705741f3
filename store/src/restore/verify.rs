//! After restoring an etcd snapshot: re-check it from the bytes on disk before declaring
//! success — its sha256 trailer, its size, and the bbolt facts recorded at backup time.

use super::RestoreError;
use crate::source::trailer::{BlockCheck, Verdict};
use crate::{Error, Result};
use cairn_format::snapshot::{Snapshot, SourceKind};
use std::path::{Path, PathBuf};

/// Check the restored database at `path` against what `snap` recorded, reading it once (the
/// sha256 trailer and the bbolt facts from the same pass, on two threads). Returns what was
/// checked.
pub fn etcd_file(path: &Path, snap: &Snapshot) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).map_err(Error::file("re-reading", path.display()))?;
    let len = f
        .metadata()
        .map_err(Error::file("re-reading", path.display()))?
        .len();
    let mut check = BlockCheck::new(true);
    super::follow::feed_written(&f, len, &mut |piece| check.feed(&piece))?;
    etcd_digest(path, snap, check)
}

/// After a tree restore of `snap` into `target`: re-check the etcd database it holds (etcd
/// and cluster snapshots) and return where it is and what was checked; None when there is
/// none. A database that fails is renamed to `<name>.failed-verification`, never left under
/// the name `cluster-restore.sh` looks for.
pub fn restored_database(target: &Path, snap: &Snapshot) -> Result<Option<(PathBuf, Vec<String>)>> {
    if !matches!(snap.source, SourceKind::Etcd | SourceKind::Cluster) {
        return Ok(None);
    }
    let Some(name) = snap.fact("etcd.file") else {
        return Ok(None);
    };
    let db = target.join(name);
    if !db.exists() {
        return Ok(None);
    }
    match etcd_file(&db, snap) {
        Ok(checks) => Ok(Some((db, checks))),
        Err(cause) => {
            let aside = target.join(format!("{name}.failed-verification"));
            let cause = Box::new(cause);
            Err(match std::fs::rename(&db, &aside) {
                Ok(()) => RestoreError::SetAside { path: aside, cause },
                Err(rename) => RestoreError::NotSetAside {
                    path: db,
                    rename,
                    cause,
                },
            }
            .into())
        }
    }
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

/// Warn when the cluster being restored is not on the z-stream release the backup came from.
pub fn cluster_version(snap: &Snapshot, target_version: Option<&str>) -> Option<String> {
    let recorded = snap.fact("cluster.version")?;
    let target = target_version?;
    let xyz = |v: &str| v.split(['-', '+']).next().unwrap_or(v).to_string();
    (xyz(recorded) != xyz(target)).then(|| {
        format!(
            "the backup was taken on cluster version {recorded}, the cluster being restored runs {target}: the platform supports restoring only a backup from the same z-stream release"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::id::Id;
    use cairn_format::snapshot::SnapshotStats;

    fn etcd_snapshot(file: &str, size: u64) -> Snapshot {
        Snapshot {
            time_ns: 1,
            host: "h".into(),
            username: "u".into(),
            source: SourceKind::Etcd,
            paths: vec![format!("/{file}")],
            tags: Vec::new(),
            tree: Id::default(),
            parent: None,
            stats: SnapshotStats::default(),
            program: "test".into(),
            facts: vec![
                ("etcd.file".into(), file.into()),
                ("etcd.size".into(), size.to_string()),
            ],
        }
    }

    #[test]
    fn a_failing_database_is_renamed_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot_1.db"), b"not etcd").unwrap();
        let err = restored_database(dir.path(), &etcd_snapshot("snapshot_1.db", 99)).unwrap_err();
        assert!(matches!(err, Error::Restore(RestoreError::SetAside { .. })));
        assert!(!dir.path().join("snapshot_1.db").exists());
        assert!(dir
            .path()
            .join("snapshot_1.db.failed-verification")
            .exists());
    }

    #[test]
    fn a_failing_database_that_cannot_be_renamed_is_named_with_both_causes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot_1.db"), b"not etcd").unwrap();
        // A non-empty directory under the aside name: rename(2) cannot replace it, even as root.
        let aside = dir.path().join("snapshot_1.db.failed-verification");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(aside.join("x"), b"").unwrap();
        let err = restored_database(dir.path(), &etcd_snapshot("snapshot_1.db", 99)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::Restore(RestoreError::NotSetAside { .. })),
            "{text}"
        );
        assert!(text.contains("could not be renamed aside"), "{text}");
        assert!(text.contains("the backup recorded 99"), "{text}");
        assert!(dir.path().join("snapshot_1.db").exists());
    }
}
