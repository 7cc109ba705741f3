//! `cairn backup …`: paths, etcd, static pod resources, a whole cluster, a host by preset, or
//! a command's output.
//!
//! Every source goes through one [`Session`]: open the repository with the write key, feed the
//! saver, flush packs and the index, then write the snapshot object last, so a failure at any
//! point leaves no snapshot, only unreferenced packs.

mod etcd;
pub mod host;
mod list_base;
mod paths;
mod project;
pub mod stdin;

use super::Reader;
use crate::args::{BackupArgs, BackupCommon, BackupSource, Global};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::{Context, Result};
use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use cairn_format::tree::Tree;
use cairn_format::Id;
use cairn_store::lease::Lease;
use cairn_store::saver::Saver;
use cairn_store::snapshots::{self, Filter};
use indicatif::ProgressBar;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

pub fn run(g: &Global, a: BackupArgs) -> Result<Code> {
    save(g, &a)?.report(g)
}

/// Take the backup `a` describes and write its snapshot; print nothing on stdout (the caller
/// reports: `cairn backup` prints it, `cairn run` folds it into the run's summary).
pub fn save(g: &Global, a: &BackupArgs) -> Result<Saved> {
    match &a.source {
        None => paths::run(g, &a.common, &a.walk, &a.paths),
        Some(BackupSource::Etcd(e)) => etcd::run_etcd(g, e),
        Some(BackupSource::StaticPods(s)) => etcd::run_static_pods(g, s),
        Some(BackupSource::Cluster(c)) => etcd::run_cluster(g, c),
        Some(BackupSource::Project(p)) => project::run(g, p),
        Some(BackupSource::Host(h)) => host::run(g, h),
        Some(BackupSource::Stdin(i)) => stdin::run(g, i),
    }
}

/// A saved snapshot and what did not make it in.
pub struct Saved {
    pub id: Id,
    pub snapshot: Snapshot,
    pub unreadable: Vec<(String, String)>,
    pub changed: Vec<String>,
}

/// This host's name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// One backup in progress.
pub struct Session<'g> {
    g: &'g Global,
    reader: Reader,
    saver: Saver,
    lease: Lease,
    started: Instant,
    time_ns: i64,
    host: String,
    tags: Vec<String>,
    /// The label of the write key in use, recorded as a fact.
    key_label: Option<String>,
    progress: ProgressBar,
}

/// What a source produced, for the snapshot.
pub struct Produced {
    pub root: Tree,
    pub source: SourceKind,
    pub paths: Vec<String>,
    pub facts: Vec<(String, String)>,
    pub parent: Option<Id>,
    pub stats: SnapshotStats,
    pub unreadable: Vec<(String, String)>,
    /// Files that kept changing while read (saved as read, possibly inconsistent).
    pub changed: Vec<String>,
}

impl<'g> Session<'g> {
    /// Open the repository and start the saver.
    pub fn open(g: &'g Global, common: &BackupCommon) -> Result<Self> {
        let started = Instant::now();
        let time_ns = chrono::Utc::now()
            .timestamp_nanos_opt()
            .context("clock outside the representable range")?;
        if let Some(h) = &common.host {
            crate::hints::check_host(h)?;
        }
        crate::hints::check_tags(&common.tags)?;
        let repo = Arc::new(credentials::open(g)?);
        let key_label = credentials::write_key_label(g)?;
        tracing::debug!("backup: repository opened in {:?}", started.elapsed());
        let t = Instant::now();
        let (lease, index) = Lease::begin_write(&repo)?;
        tracing::debug!(
            "backup: lease taken and index of {} blobs loaded in {:?}",
            index.len(),
            t.elapsed()
        );
        let reader = Reader {
            repo,
            index: Arc::new(index),
        };
        let saver = Saver::new(reader.repo.clone(), reader.index.clone(), 0);
        Ok(Session {
            g,
            reader,
            saver,
            lease,
            started,
            time_ns,
            host: common.host.clone().unwrap_or_else(hostname),
            tags: common.tags.clone(),
            key_label,
            progress: output::progress(None, g.quiet, g.json),
        })
    }

    /// The latest snapshot of this host, source and paths: unchanged files are taken from it.
    pub fn parent(&self, source: SourceKind, paths: &[String]) -> Result<Option<(Id, Snapshot)>> {
        self.latest(source, |s| s.paths == paths)
    }

    /// The latest snapshot of this host and source that `also` accepts.
    pub fn latest(
        &self,
        source: SourceKind,
        also: impl Fn(&Snapshot) -> bool,
    ) -> Result<Option<(Id, Snapshot)>> {
        let filter = Filter {
            host: Some(self.host.clone()),
            source: Some(source),
            ..Filter::default()
        };
        Ok(snapshots::list(&self.reader.repo)?
            .snapshots
            .into_iter()
            .rev()
            .find(|(_, s)| filter.matches(s) && also(s)))
    }

    /// The UTC time the backup started, as `cluster-backup.sh` stamps file names.
    pub fn stamp(&self) -> String {
        chrono::DateTime::from_timestamp_nanos(self.time_ns)
            .format("%Y-%m-%d_%H%M%S")
            .to_string()
    }

    /// Flush and write the snapshot.
    pub fn finish(self, mut p: Produced) -> Result<Saved> {
        let Session {
            g: _,
            reader,
            mut saver,
            lease,
            started,
            time_ns,
            host,
            tags,
            key_label,
            progress,
        } = self;
        if let Some(label) = key_label {
            p.facts.push((snapshots::KEY_LABEL_FACT.into(), label));
        }
        if !p.changed.is_empty() {
            p.facts
                .push(("changed_during_backup".into(), p.changed.len().to_string()));
        }
        let t = Instant::now();
        let tree = saver.save_tree(&mut p.root)?;
        let (saved, _) = saver.finish()?;
        tracing::debug!(
            "backup: tree saved, packs and index written in {:?}",
            t.elapsed()
        );
        progress.finish_and_clear();
        let stats = SnapshotStats {
            blobs_added: saved.blobs_added,
            stored_added: saved.stored_added,
            duration_ms: started.elapsed().as_millis() as u64,
            unreadable: p.unreadable.len() as u64,
            ..p.stats
        };
        let snapshot = Snapshot {
            time_ns,
            host,
            username: uzers::get_current_username()
                .map(|u| u.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: p.source,
            paths: p.paths,
            tags,
            tree,
            parent: p.parent,
            stats,
            program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
            facts: p.facts,
        };
        let t = Instant::now();
        lease.ensure_fresh()?;
        let id = snapshots::save(&reader.repo, &snapshot)?;
        drop(lease);
        tracing::debug!(
            "backup: snapshot written and lease released in {:?} ({:?} in all)",
            t.elapsed(),
            started.elapsed()
        );
        Ok(Saved {
            id,
            snapshot,
            unreadable: p.unreadable,
            changed: p.changed,
        })
    }
}

impl Saved {
    /// The code the backup exits with: whether anything was unreadable or changing.
    pub fn code(&self) -> Code {
        if self.unreadable.is_empty() && self.changed.is_empty() {
            Code::Ok
        } else {
            Code::Partial
        }
    }

    /// Print what was saved (text or JSON) and the warnings; the exit code.
    pub fn report(&self, g: &Global) -> Result<Code> {
        let (id, snapshot, p) = (&self.id, &self.snapshot, self);
        let stats = snapshot.stats;
        if g.json {
            output::json(&json!({
                "snapshot": id.to_hex(),
                "source": snapshot.source.name(),
                "parent": snapshot.parent.map(|p| p.to_hex()),
                "files": stats.files,
                "dirs": stats.dirs,
                "bytes": stats.bytes,
                "files_read": stats.files_read,
                "blobs_added": stats.blobs_added,
                "added_bytes": stats.stored_added,
                "duration_ms": stats.duration_ms,
                "facts": snapshot.facts.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "unreadable": p.unreadable.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
                "changed": p.changed,
            }))?;
        } else if !g.quiet {
            crate::outln!(
                "snapshot {} saved: {} files, {} dirs, {} ({} files read, {} new blobs, {} stored) in {:.1}s",
                id.short(),
                stats.files,
                stats.dirs,
                output::bytes(stats.bytes),
                stats.files_read,
                stats.blobs_added,
                output::bytes(stats.stored_added),
                stats.duration_ms as f64 / 1000.0
            )?;
        }
        if !p.unreadable.is_empty() {
            eprintln!(
                "cairn: warning: {} entries could not be read and are missing from snapshot {}:",
                p.unreadable.len(),
                id.short()
            );
            for (path, e) in &p.unreadable {
                eprintln!("  {path}: {e}");
            }
        }
        if !p.changed.is_empty() {
            eprintln!(
                "cairn: warning: {} files changed while being read (twice); snapshot {} holds them as last read, possibly inconsistent:",
                p.changed.len(),
                id.short()
            );
            for path in &p.changed {
                eprintln!("  {path}");
            }
        }
        Ok(self.code())
    }
}
