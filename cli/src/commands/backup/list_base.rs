//! The previous etcd backup's content list, offered as the base of this backup's (SPEC §9.1):
//! bbolt rewrites pages in place, so most of the database's page ids stay where they were and
//! the new list costs only the changed ones.

use super::Session;
use anyhow::Result;
use cairn_format::snapshot::SourceKind;
use cairn_store::content_lists::ListBase;

/// Offer the etcd database's list in the latest `source` snapshot of this host, if any. A
/// failure to read it only costs space: the backup goes on with a self-contained list.
pub(super) fn offer_previous(s: &mut Session<'_>, source: SourceKind) {
    match previous(s, source) {
        Ok(Some(base)) => s.saver.set_list_base(base),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "the previous {} snapshot's content list is unreadable ({e:#}); this backup stores a complete one",
            source.name()
        ),
    }
}

fn previous(s: &Session<'_>, source: SourceKind) -> Result<Option<ListBase>> {
    let Some((_, snap)) = s.latest(source, |_| true)? else {
        return Ok(None);
    };
    let root = s.reader.loader().load_tree(&snap.tree)?;
    Ok(root
        .nodes
        .iter()
        .filter(|n| n.name.starts_with(b"snapshot_") && n.name.ends_with(b".db"))
        .find_map(ListBase::of))
}
