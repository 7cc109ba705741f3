//! Owners by name on the host being restored: the target's own `/etc/passwd` and
//! `/etc/group` when the target is a system root other than / (a new host's disk mounted at
//! /mnt/sysimage), else this host's name service. A name unknown there keeps the recorded
//! number, as `tar` does.

use cairn_format::tree::Node;
use std::collections::HashMap;
use std::path::Path;

/// Most bytes of a passwd or group file read.
const MAX_DB: u64 = 16 << 20;

/// Maps recorded owner names to ids.
pub enum Owners {
    /// This host's NSS (getpwnam, getgrnam).
    Host,
    /// The target's passwd and group files: name → id.
    Target {
        users: HashMap<String, u32>,
        groups: HashMap<String, u32>,
    },
}

/// `name:x:ID:…` lines → name → ID.
fn parse(text: &str) -> HashMap<String, u32> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((name.to_string(), id))
        })
        .collect()
}

fn read(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_DB)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

impl Owners {
    /// For a restore into `target`: its own databases when it is a system root other than
    /// / that has both files, else this host's.
    pub fn for_target(target: &Path) -> Owners {
        let is_slash = std::fs::canonicalize(target).is_ok_and(|t| t == Path::new("/"));
        if is_slash {
            return Owners::Host;
        }
        match (
            read(&target.join("etc/passwd")),
            read(&target.join("etc/group")),
        ) {
            (Some(p), Some(g)) => Owners::Target {
                users: parse(&p),
                groups: parse(&g),
            },
            _ => Owners::Host,
        }
    }

    /// The uid to give `node`.
    pub fn uid(&self, node: &Node) -> u32 {
        let Some(name) = node.user.as_deref() else {
            return node.uid;
        };
        match self {
            Owners::Host => uzers::get_user_by_name(name).map_or(node.uid, |u| u.uid()),
            Owners::Target { users, .. } => users.get(name).copied().unwrap_or(node.uid),
        }
    }

    /// The gid to give `node`.
    pub fn gid(&self, node: &Node) -> u32 {
        let Some(name) = node.group.as_deref() else {
            return node.gid;
        };
        match self {
            Owners::Host => uzers::get_group_by_name(name).map_or(node.gid, |g| g.gid()),
            Owners::Target { groups, .. } => groups.get(name).copied().unwrap_or(node.gid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::tree::NodeKind;

    #[test]
    fn target_databases_map_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\netcd:x:992:990::/var/lib/etcd:/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\netcd:x:990:\n").unwrap();
        let o = Owners::for_target(dir.path());
        let mut n = Node::new(b"f".to_vec(), NodeKind::File);
        n.uid = 5;
        n.gid = 6;
        n.user = Some("etcd".into());
        n.group = Some("etcd".into());
        assert_eq!((o.uid(&n), o.gid(&n)), (992, 990));
        n.user = Some("nobody-here".into());
        n.group = None;
        assert_eq!((o.uid(&n), o.gid(&n)), (5, 6));
        // No databases in the target: this host's.
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(Owners::for_target(empty.path()), Owners::Host));
    }
}
