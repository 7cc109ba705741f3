//! Entries a restore creates only when asked: what could give whoever wrote the snapshot
//! (a planted snapshot, a stolen write key) control of the restored host. Restoring a tree
//! into `/` as root must not install a setuid binary or a cron job without a word.

use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind};

/// Where a snapshot's entries may be: the paths it records (and the directories above them).
/// The default scope holds everything.
#[derive(Default)]
pub struct Scope {
    /// Components of each recorded path; empty when the source records none that map onto
    /// its tree (then no entry is outside).
    paths: Vec<Vec<Vec<u8>>>,
}

impl Scope {
    /// The scope of `snap`: its recorded paths, and for etcd and cluster snapshots the
    /// database file at the root.
    pub fn of(snap: &Snapshot) -> Scope {
        use cairn_format::snapshot::SourceKind as K;
        let mut paths: Vec<Vec<Vec<u8>>> = match snap.source {
            K::Paths | K::StaticPods | K::Etcd | K::Cluster => snap
                .paths
                .iter()
                .map(|p| crate::trees::path_components(p))
                .collect(),
            // Other sources lay their trees out by their own rules (SPEC §10.1).
            _ => return Scope::default(),
        };
        if let Some(file) = snap.fact("etcd.file") {
            paths.push(vec![file.as_bytes().to_vec()]);
        }
        Scope { paths }
    }

    /// Is `path` one of the recorded paths, below one, or a directory above one?
    fn holds(&self, path: &[Vec<u8>]) -> bool {
        self.paths.is_empty()
            || self
                .paths
                .iter()
                .any(|p| path.starts_with(p) || p.starts_with(path))
    }
}

/// Why restoring `node` at `path` needs `--allow-privileged`, if it does.
pub fn reason(node: &Node, path: &[Vec<u8>], scope: &Scope) -> Option<&'static str> {
    if !scope.holds(path) {
        return Some("outside the paths the snapshot records");
    }
    if node.kind == NodeKind::File && node.mode & 0o4000 != 0 {
        return Some("setuid");
    }
    // setgid without group execute is mandatory locking, not privilege.
    if node.kind == NodeKind::File && node.mode & 0o2010 == 0o2010 {
        return Some("setgid");
    }
    if node.xattrs.iter().any(|x| x.name == b"security.capability") {
        return Some("file capabilities (security.capability)");
    }
    if matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        return Some("device node");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::snapshot::{SnapshotStats, SourceKind};
    use cairn_format::tree::Xattr;
    use cairn_format::Id;

    fn snap(paths: &[&str]) -> Snapshot {
        Snapshot {
            time_ns: 0,
            host: "h".into(),
            username: "u".into(),
            source: SourceKind::Paths,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            tags: Vec::new(),
            tree: Id([0; 32]),
            parent: None,
            stats: SnapshotStats::default(),
            program: "cairn".into(),
            facts: Vec::new(),
        }
    }

    fn at(p: &str) -> Vec<Vec<u8>> {
        crate::trees::path_components(p)
    }

    #[test]
    fn privileged_entries_are_named() {
        let scope = Scope::of(&snap(&["/etc/kubernetes"]));
        let mut f = Node::new(b"f".to_vec(), NodeKind::File);
        f.mode = 0o644;
        assert_eq!(reason(&f, &at("/etc/kubernetes/f"), &scope), None);
        assert_eq!(reason(&f, &at("/etc"), &scope), None, "a directory above");
        assert_eq!(
            reason(&f, &at("/etc/cron.d/x"), &scope),
            Some("outside the paths the snapshot records")
        );
        f.mode = 0o4755;
        assert_eq!(reason(&f, &at("/etc/kubernetes/f"), &scope), Some("setuid"));
        f.mode = 0o2755;
        assert_eq!(reason(&f, &at("/etc/kubernetes/f"), &scope), Some("setgid"));
        f.mode = 0o2644;
        assert_eq!(reason(&f, &at("/etc/kubernetes/f"), &scope), None);
        f.mode = 0o755;
        f.xattrs.push(Xattr {
            name: b"security.capability".to_vec(),
            value: vec![1],
        });
        assert!(reason(&f, &at("/etc/kubernetes/f"), &scope).is_some());
        let d = Node::new(b"sda".to_vec(), NodeKind::BlockDevice);
        assert_eq!(
            reason(&d, &at("/etc/kubernetes/sda"), &scope),
            Some("device node")
        );
    }
}
