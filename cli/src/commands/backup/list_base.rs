//! The previous etcd backup's content list, offered as the base of this backup's (SPEC §9.1):
//! bbolt rewrites pages in place, so most of the database's page ids stay where they were and
//! the new list costs only the changed ones.
//!
//! The list is needed only when the snapshot's tree is saved, so it is read on a thread of its
//! own while the new database is read and hashed (reading it first kept one core busy and the
//! other idle for ~15 ms of a ~200 ms daily backup).

use super::{Reader, Session};
use anyhow::Result;
use cairn_format::snapshot::SourceKind;
use cairn_store::content_lists::ListBase;
use std::thread::JoinHandle;

/// The search for the previous list, running.
pub(super) struct Pending {
    source: SourceKind,
    search: Option<JoinHandle<Result<Option<ListBase>>>>,
}

/// Start looking for the etcd database's list in the latest `source` snapshot of this host.
pub(super) fn start(s: &Session<'_>, source: SourceKind) -> Pending {
    let reader = Reader {
        repo: s.reader.repo.clone(),
        index: s.reader.index.clone(),
    };
    let host = s.host.clone();
    let search = std::thread::Builder::new()
        .name("cairn-list-base".into())
        .spawn(move || previous(&reader, &host, source))
        .map_err(|e| tracing::warn!("cannot start a thread to read the previous content list ({e}); this backup stores a complete one"))
        .ok();
    Pending { source, search }
}

/// Offer what [`start`] found, if anything. A failure to read it only costs space: the backup
/// goes on with a self-contained list.
pub(super) fn offer(s: &mut Session<'_>, pending: Pending) {
    let Some(search) = pending.search else {
        return;
    };
    let found = search
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the thread reading it panicked")));
    match found {
        Ok(Some(base)) => s.saver.set_list_base(base),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "the previous {} snapshot's content list is unreadable ({e:#}); this backup stores a complete one",
            pending.source.name()
        ),
    }
}

fn previous(reader: &Reader, host: &str, source: SourceKind) -> Result<Option<ListBase>> {
    let t = std::time::Instant::now();
    let Some((_, snap)) = super::latest(&reader.repo, host, source, |_| true)? else {
        return Ok(None);
    };
    let root = reader.loader().load_tree(&snap.tree)?;
    let base = root
        .nodes
        .iter()
        .filter(|n| n.name.starts_with(b"snapshot_") && n.name.ends_with(b".db"))
        .find_map(ListBase::of);
    tracing::debug!("etcd: previous content list read in {:?}", t.elapsed());
    Ok(base)
}
