//! An etcd snapshot into a backup session: streamed from a healthy member (or read from a
//! file `etcdctl snapshot save` wrote), cut at bbolt's 4 KiB pages on every core while a side
//! thread checks the sha256 trailer and computes the facts `etcdctl snapshot status` prints.
//! Static pod resources and whole-cluster backups ([`cluster`]) add the latest revision
//! directories beside it.

use super::paths::{absolute_paths, walk};
use super::{Origin, Produced, Saved, Session, Starting};
use crate::pages::save_pages;
use crate::progress::Progress;
use crate::source::bbolt_facts;
use crate::source::etcd::{Connection, Member};
use crate::source::static_pods;
use crate::source::trailer::{BlockCheck, Digest, Verdict};
use crate::source::SourceError;
use crate::{Error, Repository, Result};
use cairn_format::snapshot::{SnapshotStats, SourceKind};
use cairn_format::tree::{Node, Tree};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// bbolt pages are 4 KiB on every platform etcd runs on; chunks at page boundaries
/// deduplicate a day's scattered changes (see format/SPEC.md).
pub const ETCD_PAGE: u32 = 4096;

/// Where an etcd snapshot comes from and how it is checked.
#[derive(Debug, Clone)]
pub struct EtcdSource {
    /// How to reach the members (unused with `snapshot_file`).
    pub connection: Connection,
    /// A file `etcdctl snapshot save` wrote, instead of a live member.
    pub snapshot_file: Option<PathBuf>,
    /// Keep a snapshot without a valid sha256 trailer (recorded as missing).
    pub skip_hash_check: bool,
    /// The cluster version to record, instead of the one read from etcd.
    pub cluster_version: Option<String>,
}

/// What an operator should hear while an etcd backup runs.
#[derive(Debug)]
pub enum Note<'a> {
    /// An endpoint was skipped, and why.
    Skipped {
        /// The endpoint.
        endpoint: &'a str,
        /// Why.
        why: &'a str,
    },
    /// The member chosen, after `skipped` unhealthy endpoints.
    Chosen {
        /// The member.
        member: &'a Member,
        /// How many endpoints before it were skipped.
        skipped: usize,
    },
    /// Something the operator must know about what is saved.
    Warning(&'a str),
}

/// A stored etcd snapshot; its sha256 trailer check and bbolt inspection may still be
/// finishing on their side threads.
struct EtcdSaved {
    node: Node,
    checks: PendingChecks,
}

/// The checks of a stored etcd snapshot and the facts known before they end. Awaited as late
/// as possible (just before the snapshot is written): they end while packs are written.
struct PendingChecks {
    check: BlockCheck,
    started: std::time::Instant,
    /// What the stream was, for errors.
    what: String,
    /// Facts known before the checks end.
    facts: Vec<(String, String)>,
    size: u64,
    skip_hash_check: bool,
    from_file: bool,
    cluster_version: Option<String>,
}

impl PendingChecks {
    /// Write the snapshot of `s` once the checks pass, with their facts; they end while the
    /// packs are written, and no snapshot is written if they fail.
    fn finish(self, s: Session, produced: Produced, note: &mut dyn FnMut(Note)) -> Result<Saved> {
        s.finish_after(produced, |p| {
            p.facts.extend(self.facts(note)?);
            Ok(())
        })
    }

    /// Wait for the checks: every fact, or why the snapshot must not be kept.
    fn facts(self, note: &mut dyn FnMut(Note)) -> Result<Vec<(String, String)>> {
        let PendingChecks {
            check,
            started,
            what,
            mut facts,
            size,
            skip_hash_check,
            from_file,
            cluster_version,
        } = self;
        let digest = check.finish().ok_or(SourceError::CheckStopped)?;
        tracing::debug!(
            "etcd: sha256 trailer and bbolt checks done after {:?}",
            started.elapsed()
        );
        facts.extend(facts_of(&digest, &what)?);
        match digest.verdict {
            Verdict::Valid => facts.push(("etcd.sha256".into(), "verified".into())),
            Verdict::Invalid if skip_hash_check => {
                note(Note::Warning("the etcd snapshot has no valid sha256 trailer; restoring it will need `etcdctl snapshot restore --skip-hash-check`, which cannot tell a damaged database from a good one"));
                facts.push(("etcd.sha256".into(), "missing".into()));
            }
            Verdict::Invalid => return Err(SourceError::BadTrailer { file: from_file }.into()),
        }
        facts.push(("etcd.size".into(), size.to_string()));
        if let Some(v) = cluster_version {
            facts.retain(|(k, _)| k != "cluster.version");
            facts.push(("cluster.version".into(), v));
        }
        Ok(facts)
    }
}

/// Chunk `reader` into the session as the file `name`, checking the sha256 trailer (and,
/// with `inspect`, computing the bbolt facts from the stream) on side threads, while the
/// pages are hashed on every core; all of it begins while the session still starts (its
/// lease and index loading). `reread` is the file `reader` reads, if it is one. The checks are
/// returned still running.
fn save_db(
    s: &mut Starting,
    reader: impl Read,
    reread: Option<&std::fs::File>,
    name: String,
    inspect: bool,
) -> Result<(Node, BlockCheck, std::time::Instant)> {
    let t = std::time::Instant::now();
    let mut check = BlockCheck::new(inspect);
    let progress = s.progress().clone();
    let key = s.repo().chunk_id_key();
    let paged = save_pages(
        s.pending(),
        &key,
        reader,
        reread,
        ETCD_PAGE,
        |b| check.feed(b),
        |n| progress.inc(n),
    )?
    .map_err(|cause| SourceError::EtcdUnreadable {
        read: check.fed(),
        cause,
    })?;
    // The whole stream was fed: the checks end while the tree, packs and index are written.
    check.close();
    tracing::debug!(
        "etcd: {} bytes read, hashed and stored in {:?}",
        paged.size,
        t.elapsed()
    );
    let mut node = crate::host::file_node(name.as_bytes(), Vec::new(), 0, s.time_ns);
    paged.place_in(&mut node);
    node.mode = 0o600;
    Ok((node, check, t))
}

/// The facts the side thread computed, or why the stream is not an etcd database.
fn facts_of(digest: &Digest, what: &str) -> Result<Vec<(String, String)>> {
    match &digest.bbolt {
        Some(Ok(status)) => Ok(bbolt_facts::facts(status)),
        Some(Err(e)) => Err(SourceError::NotEtcd {
            what: what.to_string(),
            cause: e.to_string(),
        }
        .into()),
        None => Ok(Vec::new()),
    }
}

/// Take the etcd snapshot `src` describes (live or from a file); its checks may still be
/// running.
fn save_etcd(s: &mut Starting, src: &EtcdSource, note: &mut dyn FnMut(Note)) -> Result<EtcdSaved> {
    let mut facts = Vec::new();
    let (node, check, started, what) = if let Some(file) = &src.snapshot_file {
        let f = std::fs::File::open(file)
            .map_err(Error::file("opening etcd snapshot file", file.display()))?;
        let given = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let name = if given.starts_with("snapshot_") && given.ends_with(".db") {
            given.to_string()
        } else {
            format!("snapshot_{}.db", s.stamp())
        };
        facts.push(("etcd.source".into(), format!("file {}", file.display())));
        // A file that is not an etcd database is refused before anything is stored; the full
        // inspection runs on the stream, beside chunking.
        bbolt_facts::looks_like_bbolt(file)?;
        let (node, check, started) = save_db(s, &f, Some(&f), name, true)?;
        (node, check, started, file.display().to_string())
    } else {
        let conn = &src.connection;
        let (member, skipped) = conn.select()?;
        for (endpoint, why) in &skipped {
            note(Note::Skipped { endpoint, why });
        }
        note(Note::Chosen {
            member: &member,
            skipped: skipped.len(),
        });
        facts.push(("etcd.source".into(), "live".into()));
        facts.push(("etcd.endpoint".into(), member.endpoint.clone()));
        facts.push(("etcd.member".into(), member.id.clone()));
        facts.push(("etcd.version".into(), member.version.clone()));
        if let Some(v) = conn.cluster_version(&member.endpoint) {
            facts.push(("cluster.version".into(), v));
        }
        let reader = conn.snapshot(&member.endpoint)?;
        let (node, check, started) =
            save_db(s, reader, None, format!("snapshot_{}.db", s.stamp()), true)?;
        let what = format!("the snapshot streamed from {}", member.endpoint);
        (node, check, started, what)
    };
    let checks = PendingChecks {
        check,
        started,
        what,
        facts,
        size: node.size,
        skip_hash_check: src.skip_hash_check,
        from_file: src.snapshot_file.is_some(),
        cluster_version: src.cluster_version.clone(),
    };
    Ok(EtcdSaved { node, checks })
}

/// Start a backup session for [`etcd`]: its lease, index and the previous etcd snapshot's
/// content list load while the database is read.
pub fn start_etcd(repo: Arc<Repository>, origin: Origin, progress: Progress) -> Result<Starting> {
    Session::start(repo, origin, progress, Some(SourceKind::Etcd))
}

/// Start a backup session for [`cluster`], as [`start_etcd`] does.
pub fn start_cluster(
    repo: Arc<Repository>,
    origin: Origin,
    progress: Progress,
) -> Result<Starting> {
    Session::start(repo, origin, progress, Some(SourceKind::Cluster))
}

/// Back up the etcd snapshot `src` describes into `s` and write the snapshot.
pub fn etcd(mut s: Starting, src: &EtcdSource, note: &mut dyn FnMut(Note)) -> Result<Saved> {
    let saved = save_etcd(&mut s, src, note)?;
    let s = s.wait()?;
    let name = String::from_utf8_lossy(&saved.node.name).into_owned();
    let mut produced = Produced::empty(SourceKind::Etcd, vec![format!("/{name}")]);
    produced.stats = SnapshotStats {
        files: 1,
        files_read: 1,
        bytes: saved.node.size,
        ..SnapshotStats::default()
    };
    produced.root = Tree {
        nodes: vec![saved.node],
    };
    produced.facts = vec![("etcd.file".to_string(), name)];
    // The checks end while the packs are written: the snapshot is written only if they pass.
    saved.checks.finish(s, produced, note)
}

/// The latest static pod revision directories below a directory, found once and backed up
/// as found.
#[derive(Debug, Clone)]
pub struct StaticPodRevisions {
    paths: Vec<String>,
    described: String,
}

impl StaticPodRevisions {
    /// The latest revision directory of each component in `dir`; an error names `dir` when
    /// it holds none (not a control-plane host, or the wrong directory).
    pub fn find(dir: &Path) -> Result<Self> {
        let revs = static_pods::latest(dir)?;
        if revs.is_empty() {
            return Err(SourceError::NoStaticPods(dir.to_path_buf()).into());
        }
        let paths = absolute_paths(&revs.iter().map(|r| r.path.clone()).collect::<Vec<_>>())?;
        Ok(Self {
            paths,
            described: static_pods::describe(&revs),
        })
    }

    /// Walk the revision directories into `s` as a snapshot of `kind`, recording which
    /// revisions they are.
    fn walk(&self, s: &mut Session, kind: SourceKind) -> Result<Produced> {
        let mut produced = walk(s, kind, self.paths.clone(), Default::default())?;
        produced
            .facts
            .push(("static_pods.revisions".into(), self.described.clone()));
        Ok(produced)
    }
}

/// Back up the static pod revisions `pods` into `s` and write the snapshot.
pub fn static_pods(mut s: Session, pods: &StaticPodRevisions) -> Result<Saved> {
    let produced = pods.walk(&mut s, SourceKind::StaticPods)?;
    s.finish(produced)
}

/// What the platform's `cluster-backup.sh` keeps, in one snapshot: the etcd snapshot `src`
/// describes and the static pod revisions `pods`.
pub fn cluster(
    mut s: Starting,
    src: &EtcdSource,
    pods: &StaticPodRevisions,
    note: &mut dyn FnMut(Note),
) -> Result<Saved> {
    let saved = save_etcd(&mut s, src, note)?;
    let mut s = s.wait()?;
    let mut produced = pods.walk(&mut s, SourceKind::Cluster)?;
    let name = String::from_utf8_lossy(&saved.node.name).into_owned();
    produced.stats.files += 1;
    produced.stats.files_read += 1;
    produced.stats.bytes += saved.node.size;
    produced.root.nodes.push(saved.node);
    produced.facts.push(("etcd.file".into(), name));
    saved.checks.finish(s, produced, note)
}
