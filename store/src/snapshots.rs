//! Snapshot objects: list, load, save, and resolve what the user typed (`latest`, an id or a
//! unique prefix).

use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::snapshot::Snapshot;
use cairn_format::Id;

/// Largest snapshot object accepted (real ones are a few KiB; the decoder bounds each list).
const MAX_SNAPSHOT_LEN: u64 = 4 << 20;

/// Filter for `latest` and listings.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only snapshots of this host.
    pub host: Option<String>,
    /// Only snapshots carrying every one of these tags.
    pub tags: Vec<String>,
}

impl Filter {
    /// Does `s` pass?
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.host == h)
            && self.tags.iter().all(|t| s.tags.contains(t))
    }
}

/// Snapshots read from a repository.
#[derive(Debug, Default)]
pub struct Listing {
    /// Readable snapshots, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Snapshot objects that could not be read, with the reason.
    pub damaged: Vec<(String, String)>,
}

/// Read every snapshot object. Damaged ones are reported, not fatal.
pub fn list(repo: &Repository) -> Result<Listing> {
    let mut out = Listing::default();
    for obj in repo.backend().list("snapshots")? {
        let name = obj.path.rsplit('/').next().unwrap_or_default();
        let Ok(id) = name.parse::<Id>() else {
            out.damaged
                .push((obj.path.clone(), "name is not a snapshot id".into()));
            continue;
        };
        // Not even downloaded: real snapshot objects are a few KiB.
        if obj.size > MAX_SNAPSHOT_LEN + (64 << 10) {
            out.damaged.push((
                obj.path.clone(),
                format!(
                    "{} bytes, larger than any snapshot cairn writes (at most {MAX_SNAPSHOT_LEN})",
                    obj.size
                ),
            ));
            continue;
        }
        match load(repo, &id) {
            Ok(s) => out.snapshots.push((id, s)),
            // Storage that fails is not damage; a snapshot forgotten since the listing is gone.
            Err(e) if e.is_storage_failure() => return Err(e),
            Err(Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!("{e}");
                out.damaged.push((obj.path.clone(), e.to_string()));
            }
        }
    }
    out.snapshots
        .sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// Load one snapshot by id.
pub fn load(repo: &Repository, id: &Id) -> Result<Snapshot> {
    let plain = repo.get_meta("snapshots", id, MAX_SNAPSHOT_LEN)?;
    Snapshot::decode(&plain).map_err(|e| Error::damaged(format!("snapshots/{id}"), e))
}

/// Store a snapshot. Call only after the index that covers its blobs is stored.
pub fn save(repo: &Repository, snapshot: &Snapshot) -> Result<Id> {
    repo.put_meta("snapshots", &snapshot.encode())
}

/// Resolve `spec`: `latest` (newest passing `filter`), a full id, or a unique id prefix.
pub fn resolve(repo: &Repository, spec: &str, filter: &Filter) -> Result<(Id, Snapshot)> {
    if spec == "latest" {
        let listing = list(repo)?;
        return listing
            .snapshots
            .into_iter()
            .rev()
            .find(|(_, s)| filter.matches(s))
            .ok_or_else(|| Error::SnapshotNotFound(spec.to_string()));
    }
    let spec_lc = spec.to_ascii_lowercase();
    if spec_lc.is_empty() || !spec_lc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::SnapshotNotFound(spec.to_string()));
    }
    let mut matches = repo
        .backend()
        .list("snapshots")?
        .into_iter()
        .filter_map(|o| o.path.rsplit('/').next().map(str::to_string))
        .filter(|n| n.starts_with(&spec_lc));
    let first = matches
        .next()
        .ok_or_else(|| Error::SnapshotNotFound(spec.to_string()))?;
    if matches.next().is_some() {
        return Err(Error::AmbiguousSnapshot(spec.to_string()));
    }
    let id: Id = first
        .parse()
        .map_err(|_| Error::SnapshotNotFound(spec.to_string()))?;
    Ok((id, load(repo, &id)?))
}
