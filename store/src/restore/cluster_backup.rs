//! The `cluster-backup` layout: what the platform's cluster-backup.sh writes and
//! cluster-restore.sh reads — `snapshot_<ts>.db` and `static_kuberesources_<ts>.tar.gz`
//! (the static pod revision directories, paths relative to `/`) side by side in one directory.

use super::blobs::BlobReader;
use super::plan::{Plan, Sink};
use super::temporaries;

use super::{sys, FileContent, RestoreError};
use crate::loader::Loader;
use crate::trees;
use crate::{Error, Result};
use cairn_format::snapshot::{Snapshot, SourceKind};
use cairn_format::tree::{Node, NodeKind};
use rustix::fd::AsFd;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Files written.
#[derive(Debug, Default, serde::Serialize)]
pub struct Written {
    /// The etcd database, if the snapshot has one.
    pub db: Option<PathBuf>,
    /// The static pod resources archive, if the snapshot has them.
    pub archive: Option<PathBuf>,
    /// What was re-checked on the database before it got its name.
    pub verified: Vec<String>,
    /// Temporary files of killed restores removed from the directory.
    pub stale_temporaries: u64,
}

/// Write to `dir/name` through the temporary file `tmp`, renamed once complete, synced and
/// checked (the sync and the check, given what `fill` returned, run at the same time).
fn write_atomically<T>(
    dir: &Path,
    name: &str,
    tmp: &str,
    overwrite: bool,
    fill: impl FnOnce(&mut File) -> Result<T>,
    check: impl FnOnce(&Path, T) -> Result<()>,
) -> Result<PathBuf> {
    let dest = dir.join(name);
    let tmp_name = std::ffi::OsStr::new(tmp);
    let tmp = dir.join(tmp);
    let result = (|| {
        // Both files hold cluster secrets: private, as `etcdctl snapshot save` writes them.
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::file("creating", tmp.display()))?;
        let filled = fill(&mut f)?;
        // Flushing to disk and the check overlap.
        let (synced, checked) = std::thread::scope(|s| {
            let sync = s.spawn(|| f.sync_all());
            let checked = check(&tmp, filled);
            (sync.join(), checked)
        });
        synced
            .map_err(|_| RestoreError::Worker("the thread flushing to disk panicked"))?
            .map_err(Error::file("flushing to disk", tmp.display()))?;
        drop(f);
        checked.map_err(|cause| RestoreError::NotKept {
            path: dest.clone(),
            cause: Box::new(cause),
        })?;
        let dir_fd = super::open_target(dir)?.ok_or_else(|| Error::File {
            op: "opening",
            path: dir.display().to_string(),
            cause: io::ErrorKind::NotFound.into(),
        })?;
        super::rename_into_place(
            dir_fd.as_fd(),
            tmp_name,
            std::ffi::OsStr::new(name),
            overwrite,
            || dest.display().to_string(),
        )
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| dest)
}

/// The stamp in `snapshot_<stamp>.db`, or one from the snapshot time.
fn stamp(db_name: Option<&str>, snap: &Snapshot) -> String {
    db_name
        .and_then(|n| n.strip_prefix("snapshot_"))
        .and_then(|n| n.strip_suffix(".db"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            chrono::DateTime::from_timestamp_nanos(snap.time_ns)
                .format("%Y-%m-%d_%H%M%S")
                .to_string()
        })
}

/// What a cluster-backup restore of a snapshot writes.
struct Outputs {
    /// The etcd database's node and file name.
    db: Option<(Node, String)>,
    /// The static pod resources archive's name and the directories it holds.
    archive: Option<(String, Vec<String>)>,
}

impl Outputs {
    fn of(loader: &mut Loader, snap: &Snapshot) -> Result<Outputs> {
        if !matches!(
            snap.source,
            SourceKind::Etcd | SourceKind::Cluster | SourceKind::StaticPods
        ) {
            return Err(RestoreError::Refused {
                message: format!(
                    "the cluster-backup layout needs an etcd, static-pods or cluster snapshot; this one is a {} snapshot",
                    snap.source.name()
                ),
                hint: Some(
                    "for `latest`, add --source cluster, or --source etcd, to take the newest of those"
                        .into(),
                ),
            }
            .into());
        }
        // The database's content lists are read one at a time as it is written.
        let root = loader.load_tree_unresolved(&snap.tree)?;
        let db = root
            .nodes
            .into_iter()
            .find(|n| {
                n.kind == NodeKind::File
                    && n.name.starts_with(b"snapshot_")
                    && n.name.ends_with(b".db")
            })
            .map(|n| {
                let name = String::from_utf8_lossy(&n.name).into_owned();
                (n, name)
            });
        if db.is_none() && snap.source != SourceKind::StaticPods {
            let path = trees::path_components(snap.fact("etcd.file").unwrap_or("snapshot_*.db"));
            return Err(super::verify::no_database(
                snap,
                &trees::display_path(&path),
                false,
            ));
        }
        let stamp = stamp(db.as_ref().map(|(_, name)| name.as_str()), snap);
        // Cluster and static-pods snapshots list exactly the static pod revision directories.
        let archive = match snap.source {
            SourceKind::Cluster | SourceKind::StaticPods if !snap.paths.is_empty() => Some((
                format!("static_kuberesources_{stamp}.tar.gz"),
                snap.paths.clone(),
            )),
            _ => None,
        };
        Ok(Outputs { db, archive })
    }

    fn names(&self) -> Vec<&str> {
        let db = self.db.as_ref().map(|(_, name)| name.as_str());
        let archive = self.archive.as_ref().map(|(name, _)| name.as_str());
        db.into_iter().chain(archive).collect()
    }
}

/// The preflight of restoring `snap` into `dir` in the cluster-backup layout; writes nothing.
pub fn plan(
    loader: &mut Loader,
    snap: &Snapshot,
    dir: &Path,
    overwrite: bool,
    sink: Option<Sink<'_>>,
) -> Result<Plan> {
    let outputs = Outputs::of(loader, snap)?;
    super::plan::files(dir, &outputs.names(), overwrite, sink)
}

/// Restore `snap` into `dir` in the cluster-backup layout. Refuses before writing anything
/// when a file it writes exists (unless `overwrite`).
pub fn restore(
    loader: &mut Loader,
    snap: &Snapshot,
    dir: &Path,
    overwrite: bool,
) -> Result<Written> {
    let mut outputs = Outputs::of(loader, snap)?;
    super::plan::files(dir, &outputs.names(), overwrite, None)?.check(overwrite, true)?;
    fs::create_dir_all(dir).map_err(Error::file("creating", dir.display()))?;
    let mut written = Written {
        stale_temporaries: remove_stale(dir)?,
        ..Written::default()
    };
    if let Some((node, name)) = outputs.db.take() {
        let mut verified = Vec::new();
        // The database's ids (or its lists) go to the write, which frees them once its plan
        // is made.
        let mut node = node;
        let content = FileContent::take(loader, snap.tree, &mut node);
        let size = node.size;
        written.db = Some(write_atomically(
            dir,
            &name,
            &temporaries::name(1),
            overwrite,
            |f| {
                // The trailer and bbolt checks read the file back behind the writes.
                let (n, check) = super::verify::write_followed(loader, f, content, |_| {})
                    .map_err(|cause| RestoreError::Entry {
                        path: name.clone(),
                        cause: Box::new(cause),
                    })?;
                if n != size {
                    return Err(RestoreError::SizeMismatch {
                        written: n,
                        recorded: size,
                    }
                    .into());
                }
                Ok(check)
            },
            |tmp, check| {
                verified = super::verify::etcd_digest(tmp, snap, check)?;
                Ok(())
            },
        )?);
        written.verified = verified;
    }
    if let Some((name, pod_dirs)) = &outputs.archive {
        written.archive = Some(write_atomically(
            dir,
            name,
            &temporaries::name(2),
            overwrite,
            |f| archive(f, loader, snap, pod_dirs),
            |_, ()| Ok(()),
        )?);
    }
    Ok(written)
}

/// Remove killed restores' temporaries from `dir`; how many.
fn remove_stale(dir: &Path) -> Result<u64> {
    let fd = super::open_target(dir)?.ok_or_else(|| Error::File {
        op: "opening",
        path: dir.display().to_string(),
        cause: io::ErrorKind::NotFound.into(),
    })?;
    temporaries::remove_stale(fd.as_fd()).map_err(Error::file(
        "removing stale temporary files from",
        dir.display(),
    ))
}

/// Write the static pod directories `pod_dirs` of `snap` as a gzipped tar archive to `f`.
fn archive(f: &mut File, loader: &mut Loader, snap: &Snapshot, pod_dirs: &[String]) -> Result<()> {
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for p in pod_dirs {
        let comps = crate::trees::path_components(p);
        let node = trees::find(loader, &snap.tree, &comps)?.ok_or_else(|| {
            RestoreError::Inconsistent(format!("{p} is listed in the snapshot but not in its tree"))
        })?;
        append(&mut tar, loader, &mut comps.clone(), &node)?;
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(sys("writing the archive"))?;
    Ok(())
}

/// Append `node` at `path` (and everything below it) to the archive, as GNU tar would with
/// the leading `/` removed.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    loader: &mut Loader,
    path: &mut Vec<Vec<u8>>,
    node: &Node,
) -> Result<()> {
    let rel = crate::trees::path_string(path)
        .trim_start_matches('/')
        .to_string();
    let mut h = tar::Header::new_gnu();
    h.set_mode(node.mode);
    h.set_uid(node.uid.into());
    h.set_gid(node.gid.into());
    if let Some(u) = &node.user {
        let _ = h.set_username(u);
    }
    if let Some(g) = &node.group {
        let _ = h.set_groupname(g);
    }
    h.set_mtime(node.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
    match node.kind {
        NodeKind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, format!("{rel}/"), io::empty())
                .map_err(Error::file("archiving", &rel))?;
            let sub = node.subtree.ok_or_else(|| {
                RestoreError::Inconsistent(format!("{rel}: a directory without subtree"))
            })?;
            let tree = loader.load_tree(&sub)?;
            for child in &tree.nodes {
                path.push(child.name.clone());
                append(tar, loader, path, child)?;
                path.pop();
            }
        }
        NodeKind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(node.size);
            let mut r = BlobReader::new(loader, &node.content);
            tar.append_data(&mut h, &rel, &mut r)
                .map_err(Error::file("archiving", &rel))?;
        }
        NodeKind::Symlink => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target =
                String::from_utf8_lossy(node.target.as_deref().unwrap_or_default()).into_owned();
            tar.append_link(&mut h, &rel, target)
                .map_err(Error::file("archiving", &rel))?;
        }
        _ => tracing::warn!("{rel}: special files are not archived"),
    }
    Ok(())
}
