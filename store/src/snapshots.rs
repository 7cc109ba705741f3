//! Snapshot objects: list, load, save, and resolve what the user typed (`latest`, an id or a
//! unique prefix).

use crate::repo::Repository;
use crate::retention::{group_key, GroupBy};
use crate::{Error, Result};
use cairn_format::snapshot::{Snapshot, SourceKind};
use cairn_format::Id;

/// Largest snapshot object accepted (real ones are a few KiB; the decoder bounds each list).
const MAX_SNAPSHOT_LEN: u64 = 4 << 20;

/// Which snapshots `latest`, listings and policies consider; every set field must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only snapshots of this host.
    pub host: Option<String>,
    /// Only snapshots carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only snapshots of this source kind.
    pub source: Option<SourceKind>,
    /// Only snapshots written by this backup command, as [`made_by`] names it (`host`,
    /// `stdin`: kinds the format does not tell apart from `paths`).
    pub made_by: Option<&'static str>,
    /// Only snapshots that recorded every one of these paths (a trailing `/` is ignored).
    pub paths: Vec<String>,
    /// Only snapshots written with the write key of this label (fact [`KEY_LABEL_FACT`]).
    pub key_label: Option<String>,
}

/// The snapshot fact naming the label of the write key that wrote it.
pub const KEY_LABEL_FACT: &str = "key.label";

/// The label of the write key that wrote `s`, if it had one.
pub fn key_label(s: &Snapshot) -> Option<&str> {
    s.fact(KEY_LABEL_FACT)
}

/// The backup command that wrote `s`: its source kind, except that `backup host` and
/// `backup stdin` write kind `paths` and are told apart by their facts (SPEC §10.1).
pub fn made_by(s: &Snapshot) -> &'static str {
    let has = |key: &str| s.facts.iter().any(|(k, _)| k == key);
    match s.source {
        SourceKind::Paths if has("host.presets") => "host",
        SourceKind::Paths if has("stdin.file") => "stdin",
        kind => kind.name(),
    }
}

impl Filter {
    /// Does `s` pass?
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.host.as_ref().is_none_or(|h| &s.host == h)
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.source.is_none_or(|k| s.source == k)
            && self.made_by.is_none_or(|m| made_by(s) == m)
            && self
                .paths
                .iter()
                .all(|p| s.paths.iter().any(|q| same_path(p, q)))
            && self
                .key_label
                .as_deref()
                .is_none_or(|l| key_label(s) == Some(l))
    }

    /// The filter as the options that set it (`--host master-0 --tag nightly`), empty when
    /// nothing is set.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("--host {h}"));
        }
        parts.extend(self.tags.iter().map(|t| format!("--tag {t}")));
        match (self.made_by, self.source) {
            (Some(m), _) => parts.push(format!("--source {m}")),
            (None, Some(k)) => parts.push(format!("--source {}", k.name())),
            (None, None) => {}
        }
        parts.extend(self.paths.iter().map(|p| format!("--path {p}")));
        if let Some(l) = &self.key_label {
            parts.push(format!("--key-label {l}"));
        }
        parts.join(" ")
    }

    /// Whether no field is set (every snapshot passes).
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.tags.is_empty()
            && self.source.is_none()
            && self.made_by.is_none()
            && self.paths.is_empty()
            && self.key_label.is_none()
    }
}

/// Equal paths, ignoring trailing slashes (`/etc/` is `/etc`, `/` stays `/`).
fn same_path(a: &str, b: &str) -> bool {
    fn trim(p: &str) -> &str {
        match p.trim_end_matches('/') {
            "" if p.starts_with('/') => "/",
            t => t,
        }
    }
    trim(a) == trim(b)
}

/// Snapshots read from a repository.
#[derive(Debug, Default)]
pub struct Listing {
    /// Readable snapshots, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Snapshot objects that could not be read, for the caller to report.
    pub unreadable: Vec<Unreadable>,
}

impl Listing {
    /// Log each unreadable object, for callers that report them nowhere else.
    pub fn warn_unreadable(&self) {
        for u in &self.unreadable {
            tracing::warn!(
                "{} could not be read ({}); `cairn check` reports it",
                u.path,
                u.why
            );
        }
    }
}

/// A snapshot object that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Its path.
    pub path: String,
    /// Why.
    pub why: String,
    /// A newer cairn wrote it: intact, but this version cannot read it (not damage).
    pub newer: bool,
}

impl Unreadable {
    fn damaged(path: &str, why: String) -> Unreadable {
        Unreadable {
            path: path.to_string(),
            why,
            newer: false,
        }
    }
}

/// Read every snapshot object. Those that cannot be read are listed, not fatal.
pub fn list(repo: &Repository) -> Result<Listing> {
    let mut out = Listing::default();
    for obj in repo.backend().list("snapshots")? {
        let Some(id) = Repository::id_of_path(&obj.path) else {
            let why = "name is not a snapshot id".to_string();
            out.unreadable.push(Unreadable::damaged(&obj.path, why));
            continue;
        };
        // Not even downloaded: real snapshot objects are a few KiB.
        if obj.size > MAX_SNAPSHOT_LEN + (64 << 10) {
            let why = format!(
                "{} bytes, larger than any snapshot cairn writes (at most {MAX_SNAPSHOT_LEN})",
                obj.size
            );
            out.unreadable.push(Unreadable::damaged(&obj.path, why));
            continue;
        }
        match load(repo, &id) {
            Ok(s) => out.snapshots.push((id, s)),
            // Storage that fails is not damage; a snapshot forgotten since the listing is gone.
            Err(e) if e.is_storage_failure() => return Err(e),
            Err(Error::NotFound { .. }) => {}
            Err(e) => out.unreadable.push(Unreadable {
                path: obj.path.clone(),
                newer: matches!(&e, Error::Damaged { cause, .. } if cause.is_newer_format()),
                why: e.to_string(),
            }),
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
    if spec == LATEST {
        return newest(repo, |s| filter.matches(s)).map_err(|e| match e {
            Error::SnapshotNotFound(_) if !filter.is_empty() => {
                Error::SnapshotNotFound(format!("{LATEST} {}", filter.describe()))
            }
            e => e,
        });
    }
    let id = resolve_name(repo, spec)?;
    Ok((id, load(repo, &id)?))
}

/// The snapshot object `spec` names, a full id or a unique id prefix, without reading it.
pub fn resolve_name(repo: &Repository, spec: &str) -> Result<Id> {
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
    first
        .parse()
        .map_err(|_| Error::SnapshotNotFound(spec.to_string()))
}

/// How far ahead of this host's clock a snapshot may be dated (clock skew between hosts)
/// before it counts as future-dated.
pub const FUTURE_TOLERANCE_NS: i64 = 3600 * 1_000_000_000;

/// This host's clock, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Is `s` dated more than [`FUTURE_TOLERANCE_NS`] after `now_ns`? Such a snapshot was planted
/// or written by a host whose clock is wrong: it would stay `latest` for ever and distort
/// retention (keep-within counts back from a group's newest), so neither counts it.
pub fn is_future(s: &Snapshot, now_ns: i64) -> bool {
    s.time_ns > now_ns.saturating_add(FUTURE_TOLERANCE_NS)
}

/// What the user types for the newest snapshot.
pub const LATEST: &str = "latest";

/// The newest snapshot passing `keep`, future-dated ones aside (named in a warning). A
/// snapshot object that cannot be read may be the newest: the answer is then unknown, and
/// is refused rather than guessed (an older snapshot restored as `latest` would pass
/// silently), naming the object.
fn newest(repo: &Repository, keep: impl Fn(&Snapshot) -> bool) -> Result<(Id, Snapshot)> {
    let now = now_ns();
    let listing = list(repo)?;
    // An object whose name is no snapshot id was never written as a snapshot by cairn.
    let unreadable: Vec<_> = listing
        .unreadable
        .iter()
        .filter(|u| Repository::id_of_path(&u.path).is_some())
        .collect();
    // Damage first: it is what the operator must act on.
    let first = unreadable.iter().find(|u| !u.newer).or(unreadable.first());
    if let Some(u) = first {
        return Err(Error::LatestUnknown {
            object: u.path.clone(),
            cause: u.why.clone(),
            more: unreadable.len() - 1,
            newer: u.newer,
        });
    }
    listing
        .snapshots
        .into_iter()
        .rev()
        .filter(|(id, s)| {
            let future = is_future(s, now);
            if future && keep(s) {
                tracing::warn!(
                    "snapshot {} is dated in the future and is not taken as latest (planted, or \
                     its host's clock is wrong); `cairn check` reports it",
                    id.short()
                );
            }
            !future
        })
        .find(|(_, s)| keep(s))
        .ok_or_else(|| Error::SnapshotNotFound(LATEST.to_string()))
}

/// Two snapshots to compare, as [`resolve_pair`] found them.
#[derive(Debug)]
pub struct Pair {
    /// The first (older) snapshot.
    pub from: (Id, Snapshot),
    /// The second (newer) snapshot.
    pub to: (Id, Snapshot),
    /// Set when `latest` was taken within the group of the other snapshot: that one's id.
    pub latest_in_group_of: Option<Id>,
}

/// Resolve two snapshots to compare. When exactly one of them is `latest` and `filter` is
/// empty, `latest` is the newest snapshot of the other one's group (same host, source kind and
/// paths, grouped as `forget` groups them), not the newest of any kind; otherwise each is
/// resolved as [`resolve`] does.
pub fn resolve_pair(repo: &Repository, from: &str, to: &str, filter: &Filter) -> Result<Pair> {
    let grouped = filter.is_empty() && ((from == LATEST) != (to == LATEST));
    if !grouped {
        return Ok(Pair {
            from: resolve(repo, from, filter)?,
            to: resolve(repo, to, filter)?,
            latest_in_group_of: None,
        });
    }
    let (given, latest_is_from) = if from == LATEST {
        (resolve(repo, to, filter)?, true)
    } else {
        (resolve(repo, from, filter)?, false)
    };
    let by = GroupBy::default();
    let key = group_key(by, &given.1);
    let latest = newest(repo, |s| group_key(by, s) == key)?;
    let anchor = Some(given.0);
    let (from, to) = if latest_is_from {
        (latest, given)
    } else {
        (given, latest)
    };
    Ok(Pair {
        from,
        to,
        latest_in_group_of: anchor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::snapshot::SnapshotStats;

    fn snap(host: &str, source: SourceKind, paths: &[&str], tags: &[&str]) -> Snapshot {
        Snapshot {
            time_ns: 1,
            host: host.into(),
            username: "u".into(),
            source,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: Id::default(),
            parent: None,
            stats: SnapshotStats::default(),
            program: "test".into(),
            facts: Vec::new(),
        }
    }

    #[test]
    fn host_and_stdin_backups_are_paths_snapshots_told_apart_by_facts() {
        let mut host = snap("h", SourceKind::Paths, &["/etc"], &[]);
        host.facts
            .push(("host.presets".into(), "ocp4-control-plane".into()));
        let mut stdin = snap("h", SourceKind::Paths, &["/dump"], &[]);
        stdin.facts.push(("stdin.file".into(), "/dump".into()));
        let plain = snap("h", SourceKind::Paths, &["/etc"], &[]);
        let etcd = snap("h", SourceKind::Etcd, &["/"], &[]);
        let by = |m| Filter {
            made_by: Some(m),
            ..Filter::default()
        };
        let paths = Filter {
            source: Some(SourceKind::Paths),
            ..Filter::default()
        };
        for (s, name) in [
            (&host, "host"),
            (&stdin, "stdin"),
            (&plain, "paths"),
            (&etcd, "etcd"),
        ] {
            assert_eq!(made_by(s), name);
            assert!(by(name).matches(s));
            assert_eq!(paths.matches(s), name != "etcd", "{name}");
        }
        assert!(!by("host").matches(&plain) && !by("stdin").matches(&host));
    }

    #[test]
    fn filter_table() {
        let s = snap("h", SourceKind::Paths, &["/etc", "/var/lib"], &["a", "b"]);
        let root = snap("h", SourceKind::StaticPods, &["/"], &[]);
        let f = |host: Option<&str>, tags: &[&str], source, paths: &[&str]| Filter {
            host: host.map(str::to_string),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            source,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            made_by: None,
            key_label: None,
        };
        let cases: Vec<(&str, Filter, &Snapshot, bool)> = vec![
            ("empty", Filter::default(), &s, true),
            ("host", f(Some("h"), &[], None, &[]), &s, true),
            ("other host", f(Some("x"), &[], None, &[]), &s, false),
            ("all tags", f(None, &["a", "b"], None, &[]), &s, true),
            ("missing tag", f(None, &["a", "c"], None, &[]), &s, false),
            ("kind", f(None, &[], Some(SourceKind::Paths), &[]), &s, true),
            (
                "other kind",
                f(None, &[], Some(SourceKind::Etcd), &[]),
                &s,
                false,
            ),
            ("one path", f(None, &[], None, &["/var/lib"]), &s, true),
            (
                "both paths",
                f(None, &[], None, &["/etc", "/var/lib"]),
                &s,
                true,
            ),
            ("trailing slash", f(None, &[], None, &["/etc/"]), &s, true),
            (
                "not a prefix match",
                f(None, &[], None, &["/var"]),
                &s,
                false,
            ),
            (
                "one path missing",
                f(None, &[], None, &["/etc", "/opt"]),
                &s,
                false,
            ),
            ("root", f(None, &[], None, &["//"]), &root, true),
            (
                "root is not every path",
                f(None, &[], None, &["/"]),
                &s,
                false,
            ),
            (
                "all fields",
                f(Some("h"), &["b"], Some(SourceKind::Paths), &["/etc"]),
                &s,
                true,
            ),
        ];
        for (name, filter, snapshot, want) in cases {
            assert_eq!(filter.matches(snapshot), want, "{name}");
            assert_eq!(filter.is_empty(), name == "empty", "{name}");
        }
    }
}
