//! Taking a backup: every source goes through one [`Session`]. It opens the repository with
//! its lease, feeds the saver, flushes packs and the index, then writes the snapshot object
//! last, so a failure at any point leaves no snapshot, only unreferenced packs.
//!
//! [`paths`] walks host paths into a session and [`etcd`] streams an etcd snapshot into one;
//! host presets ([`crate::host`]) and project exports ([`crate::project`]) build on them.

pub mod etcd;
pub mod host;
pub mod paths;

use crate::content_lists::ListBase;
use crate::index::Index;
use crate::lease::Lease;
use crate::loader::Loader;
use crate::pending::Pending;
use crate::progress::Progress;
use crate::saver::Saver;
use crate::snapshots::{self, Filter};
use crate::{Error, Repository, Result};
use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use cairn_format::tree::Tree;
use cairn_format::Id;
use std::sync::Arc;
use std::time::Instant;

/// Who a backup is recorded as made by.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Host name recorded (this host's by default, see [`hostname`]).
    pub host: String,
    /// Tags.
    pub tags: Vec<String>,
    /// The label of the write key in use, recorded as a fact.
    pub key_label: Option<String>,
}

/// One backup in progress.
pub struct Session {
    repo: Arc<Repository>,
    index: Arc<Index>,
    /// The write pipeline the source feeds.
    pub saver: Saver,
    lease: Lease,
    started: Instant,
    /// When the backup started (nanoseconds since the epoch): the snapshot's time.
    pub time_ns: i64,
    origin: Origin,
    progress: Progress,
}

/// A backup whose lease, index and previous content list load on a thread of their own
/// ([`Session::start`]) while its source is already being read.
pub struct Starting {
    repo: Arc<Repository>,
    time_ns: i64,
    progress: Progress,
    session: Pending<Session>,
}

impl Starting {
    /// The repository written to (its keys and config are loaded).
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// Where progress goes.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// [`Session::stamp`].
    pub fn stamp(&self) -> String {
        stamp(self.time_ns)
    }

    /// The session, still starting or started.
    pub(crate) fn pending(&mut self) -> &mut Pending<Session> {
        &mut self.session
    }

    /// The session, once started.
    pub fn wait(self) -> Result<Session> {
        self.session.wait()
    }
}

impl AsMut<Saver> for Session {
    fn as_mut(&mut self) -> &mut Saver {
        &mut self.saver
    }
}

/// The UTC time `time_ns`, as `cluster-backup.sh` stamps file names.
fn stamp(time_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(time_ns)
        .format("%Y-%m-%d_%H%M%S")
        .to_string()
}

/// What a source produced, for the snapshot.
pub struct Produced {
    /// The root directory.
    pub root: Tree,
    /// The kind of source.
    pub source: SourceKind,
    /// The paths the snapshot records.
    pub paths: Vec<String>,
    /// Facts about the source.
    pub facts: Vec<(String, String)>,
    /// The snapshot unchanged files were taken from.
    pub parent: Option<Id>,
    /// Counts.
    pub stats: SnapshotStats,
    /// Entries that could not be read, with why.
    pub unreadable: Vec<(String, String)>,
    /// Files that kept changing while read (saved as read, possibly inconsistent).
    pub changed: Vec<String>,
}

impl Produced {
    /// Nothing yet, for a source that fills it in.
    pub fn empty(source: SourceKind, paths: Vec<String>) -> Produced {
        Produced {
            root: Tree::default(),
            source,
            paths,
            facts: Vec::new(),
            parent: None,
            stats: SnapshotStats::default(),
            unreadable: Vec::new(),
            changed: Vec::new(),
        }
    }
}

/// A saved snapshot and what did not make it in.
pub struct Saved {
    /// Its id.
    pub id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Entries that could not be read, with why.
    pub unreadable: Vec<(String, String)>,
    /// Files that kept changing while read.
    pub changed: Vec<String>,
}

impl Saved {
    /// Whether everything asked for is in the snapshot as read once.
    pub fn complete(&self) -> bool {
        self.unreadable.is_empty() && self.changed.is_empty()
    }
}

/// This host's name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

impl Session {
    /// Start a backup into `repo`: take the write lease, load the index, start the saver.
    pub fn open(repo: Arc<Repository>, origin: Origin, progress: Progress) -> Result<Session> {
        Session::start(repo, origin, progress, None)?.wait()
    }

    /// [`Session::open`] on a thread of its own, and with `list_of`, the content list of the
    /// latest snapshot of that source as the base of this one's ([`Session::offer_previous_list`]):
    /// the source can be read meanwhile (an etcd database is read and hashed while the lease,
    /// the index and the previous list load).
    pub fn start(
        repo: Arc<Repository>,
        origin: Origin,
        progress: Progress,
        list_of: Option<SourceKind>,
    ) -> Result<Starting> {
        let started = Instant::now();
        let time_ns = chrono::Utc::now()
            .timestamp_nanos_opt()
            .ok_or_else(|| Error::Invalid("the clock is outside the representable range".into()))?;
        let (r, p) = (repo.clone(), progress.clone());
        let session = Pending::spawn("cairn-start", "the backup's lease and index", move || {
            Session::begin(r, origin, p, started, time_ns, list_of)
        })?;
        Ok(Starting {
            repo,
            time_ns,
            progress,
            session,
        })
    }

    /// The lease and index of [`Session::start`]; the snapshots are listed for the previous
    /// content list meanwhile.
    fn begin(
        repo: Arc<Repository>,
        origin: Origin,
        progress: Progress,
        started: Instant,
        time_ns: i64,
        list_of: Option<SourceKind>,
    ) -> Result<Session> {
        std::thread::scope(|scope| {
            let listing = list_of.map(|_| scope.spawn(|| snapshots::list(&repo)));
            let (lease, index) = Lease::begin_write(&repo)?;
            tracing::debug!(
                "backup: lease taken and index of {} blobs loaded in {:?}",
                index.len(),
                started.elapsed()
            );
            let index = Arc::new(index);
            let saver = Saver::new(repo.clone(), index.clone(), 0);
            let mut session = Session {
                repo: repo.clone(),
                index,
                saver,
                lease,
                started,
                time_ns,
                origin,
                progress,
            };
            if let (Some(source), Some(listing)) = (list_of, listing) {
                let listing = listing.join().unwrap_or_else(|_| {
                    Err(Error::Invalid("the snapshot listing thread died".into()))
                });
                session.offer_previous_list(source, listing);
            }
            Ok(session)
        })
    }

    /// The repository written to.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.repo
    }

    /// A loader over the repository as it was when the backup started.
    pub fn loader(&self) -> Loader {
        Loader::new(self.repo.clone(), self.index.clone())
    }

    /// Where progress goes.
    pub fn progress(&self) -> &Progress {
        &self.progress
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
        Ok(self.latest_in(snapshots::list(&self.repo)?, source, also))
    }

    /// [`Session::latest`] among the snapshots `listing` holds.
    fn latest_in(
        &self,
        listing: snapshots::Listing,
        source: SourceKind,
        also: impl Fn(&Snapshot) -> bool,
    ) -> Option<(Id, Snapshot)> {
        listing.warn_unreadable();
        let filter = Filter {
            host: Some(self.origin.host.clone()),
            source: Some(source),
            ..Filter::default()
        };
        listing
            .snapshots
            .into_iter()
            .rev()
            .find(|(_, s)| filter.matches(s) && also(s))
    }

    /// The UTC time the backup started, as `cluster-backup.sh` stamps file names.
    pub fn stamp(&self) -> String {
        stamp(self.time_ns)
    }

    /// Offer the etcd database's content list in the latest `source` snapshot of this host
    /// (among `listing`) as the base of this backup's (SPEC §9.1): bbolt rewrites pages in
    /// place, so most page ids stay where they were and the new list costs only the changed
    /// ones. A failure to read it only costs space: the backup goes on with a self-contained
    /// list.
    fn offer_previous_list(&mut self, source: SourceKind, listing: Result<snapshots::Listing>) {
        let t = Instant::now();
        let previous = listing.and_then(|l| self.previous_list(l, source));
        tracing::debug!("backup: previous content list read in {:?}", t.elapsed());
        match previous {
            Ok(Some(base)) => self.saver.set_list_base(base),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "the previous {} snapshot's content list is unreadable ({e}); this backup stores a complete one",
                source.name()
            ),
        }
    }

    fn previous_list(
        &self,
        listing: snapshots::Listing,
        source: SourceKind,
    ) -> Result<Option<ListBase>> {
        let Some((_, snap)) = self.latest_in(listing, source, |_| true) else {
            return Ok(None);
        };
        // Its lists are read one at a time as this backup's are written.
        let mut loader = self.loader();
        let root = loader.load_tree_unresolved(&snap.tree)?;
        Ok(root
            .nodes
            .into_iter()
            .find(|n| n.name.starts_with(b"snapshot_") && n.name.ends_with(b".db"))
            .and_then(|n| ListBase::of(loader, snap.tree, n)))
    }

    /// Flush and write the snapshot.
    pub fn finish(self, p: Produced) -> Result<Saved> {
        self.finish_after(p, |_| Ok(()))
    }

    /// [`Session::finish`], calling `complete` once the packs and the index are written, just
    /// before the snapshot is: facts still being computed (an etcd snapshot's trailer check)
    /// are awaited while the packs are written instead of before. If it fails, no snapshot is
    /// written.
    pub fn finish_after(
        self,
        mut p: Produced,
        complete: impl FnOnce(&mut Produced) -> Result<()>,
    ) -> Result<Saved> {
        let Session {
            repo,
            mut saver,
            lease,
            started,
            time_ns,
            origin,
            progress,
            ..
        } = self;
        let t = Instant::now();
        let tree = saver.save_tree(&mut p.root)?;
        let (saved, _) = saver.finish()?;
        tracing::debug!(
            "backup: tree saved, packs and index written in {:?}",
            t.elapsed()
        );
        complete(&mut p)?;
        if let Some(label) = origin.key_label {
            p.facts.push((snapshots::KEY_LABEL_FACT.into(), label));
        }
        if !p.changed.is_empty() {
            p.facts
                .push(("changed_during_backup".into(), p.changed.len().to_string()));
        }
        progress.done();
        let stats = SnapshotStats {
            blobs_added: saved.blobs_added,
            stored_added: saved.stored_added,
            duration_ms: started.elapsed().as_millis() as u64,
            unreadable: p.unreadable.len() as u64,
            ..p.stats
        };
        let snapshot = Snapshot {
            time_ns,
            host: origin.host,
            username: uzers::get_current_username()
                .map(|u| u.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: p.source,
            paths: p.paths,
            tags: origin.tags,
            tree,
            parent: p.parent,
            stats,
            program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
            facts: p.facts,
        };
        let t = Instant::now();
        lease.ensure_fresh()?;
        let id = snapshots::save(&repo, &snapshot)?;
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
