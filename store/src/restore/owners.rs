//! Owners by name on the host being restored: the target's own `/etc/passwd` and
//! `/etc/group` when the target is a system root other than / (a new host's disk mounted at
//! /mnt/sysimage), else this host's name service. A name unknown there keeps the recorded
//! number, as `tar` does.

use cairn_format::tree::Node;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Most bytes of a passwd or group file read.
const MAX_DB: u64 = 16 << 20;

/// Maps recorded owner names to ids.
pub enum Owners {
    /// This host's NSS (getpwnam, getgrnam), each name looked up once: a lookup reads
    /// nsswitch.conf, passwd and group again (a dozen system calls), and a config tree of
    /// thousands of files has a handful of owners.
    Host(HostCache),
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

/// Names looked up on this host: name → id, None when unknown.
#[derive(Default)]
pub struct HostCache {
    users: Mutex<HashMap<String, Option<u32>>>,
    groups: Mutex<HashMap<String, Option<u32>>>,
}

/// `name`'s entry in `cache`, looked up with `find` the first time.
fn cached(
    cache: &Mutex<HashMap<String, Option<u32>>>,
    name: &str,
    find: impl FnOnce(&str) -> Option<u32>,
) -> Option<u32> {
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(id) = map.get(name) {
        return *id;
    }
    let id = find(name);
    map.insert(name.to_string(), id);
    id
}

impl Owners {
    /// For a restore into `target`: its own databases when it is a system root other than
    /// / that has both files, else this host's.
    pub fn for_target(target: &Path) -> Owners {
        let is_slash = std::fs::canonicalize(target).is_ok_and(|t| t == Path::new("/"));
        if is_slash {
            return Owners::Host(HostCache::default());
        }
        match (
            read(&target.join("etc/passwd")),
            read(&target.join("etc/group")),
        ) {
            (Some(p), Some(g)) => Owners::Target {
                users: parse(&p),
                groups: parse(&g),
            },
            _ => Owners::Host(HostCache::default()),
        }
    }

    /// The uid to give `node`.
    pub fn uid(&self, node: &Node) -> u32 {
        let Some(name) = node.user.as_deref() else {
            return node.uid;
        };
        match self {
            Owners::Host(c) => cached(&c.users, name, |n| {
                uzers::get_user_by_name(n).map(|u| u.uid())
            })
            .unwrap_or(node.uid),
            Owners::Target { users, .. } => users.get(name).copied().unwrap_or(node.uid),
        }
    }

    /// The gid to give `node`.
    pub fn gid(&self, node: &Node) -> u32 {
        let Some(name) = node.group.as_deref() else {
            return node.gid;
        };
        match self {
            Owners::Host(c) => cached(&c.groups, name, |n| {
                uzers::get_group_by_name(n).map(|g| g.gid())
            })
            .unwrap_or(node.gid),
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
        assert!(matches!(Owners::for_target(empty.path()), Owners::Host(_)));
        // This host's names, the second time from the cache.
        let host = Owners::for_target(empty.path());
        n.user = Some("root".into());
        n.group = Some("root".into());
        assert_eq!((host.uid(&n), host.gid(&n)), (0, 0));
        assert_eq!((host.uid(&n), host.gid(&n)), (0, 0));
        n.user = Some("no-such-user-here".into());
        assert_eq!(host.uid(&n), 5);
    }
}
