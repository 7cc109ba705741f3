//! Built-in host presets: per node role, the files the platform's guides say to keep so the
//! host can be rebuilt, and the marker files that say a host plays that role.
//!
//! Presets are data. A path may end in a glob (`/etc/sysconfig/docker*`), matched against the
//! names of its directory when the backup runs. `auto` picks every preset whose markers all
//! exist, then drops those whose paths another picked preset already covers (an OpenShift 3
//! master is also a node: the master preset is kept, the node one is dropped).

use serde::Serialize;
use std::path::Path;

/// The characters that make a path component a glob (`*`, `?`, `[…]`, `{a,b}`).
pub const GLOB_CHARS: &[char] = &['*', '?', '[', '{'];

/// A named list of host paths to back up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// Name, as `--preset` takes it.
    pub name: String,
    /// What host it is for.
    pub description: String,
    /// Absolute host paths; the last component may be a glob.
    pub paths: Vec<String>,
    /// Absolute host paths that all exist on a host of this role (for `--preset auto`).
    pub markers: Vec<String>,
    /// Where it comes from: `built-in`, or the configuration file.
    pub origin: String,
}

/// CA anchors the platform's guides list for every role.
const ANCHORS: &str = "/etc/pki/ca-trust/source/anchors";

struct Builtin {
    name: &'static str,
    description: &'static str,
    paths: &'static [&'static str],
    markers: &'static [&'static str],
}

const OCP3_NODE_PATHS: &[&str] = &[
    "/etc/origin/node",
    "/etc/sysconfig/atomic-openshift-node",
    "/etc/sysconfig/docker*",
    "/etc/sysconfig/flanneld",
    "/etc/sysconfig/iptables",
    "/etc/dnsmasq.conf",
    "/etc/dnsmasq.d",
    "/etc/NetworkManager/dispatcher.d/99-origin-dns.sh",
    "/etc/cni",
    ANCHORS,
    "/etc/docker/certs.d",
    "/etc/containers/registries.conf",
];

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "ocp3-master",
        description: "OpenShift 3.x master (with co-located etcd where present)",
        paths: &[
            "/etc/origin",
            "/etc/sysconfig/atomic-openshift-*",
            "/etc/etcd",
            "/etc/sysconfig/etcd",
            "/etc/sysconfig/docker*",
            "/etc/sysconfig/flanneld",
            "/etc/sysconfig/iptables",
            "/etc/dnsmasq.conf",
            "/etc/dnsmasq.d",
            "/etc/NetworkManager/dispatcher.d/99-origin-dns.sh",
            "/etc/cni",
            ANCHORS,
            "/etc/docker/certs.d",
            "/etc/containers/registries.conf",
        ],
        markers: &["/etc/origin/master"],
    },
    Builtin {
        name: "ocp3-node",
        description: "OpenShift 3.x node",
        paths: OCP3_NODE_PATHS,
        markers: &["/etc/origin/node"],
    },
    Builtin {
        name: "ocp3-etcd",
        description: "OpenShift 3.x etcd host: configuration and certificates",
        paths: &["/etc/etcd", "/etc/sysconfig/etcd", ANCHORS],
        markers: &["/etc/etcd/etcd.conf"],
    },
    Builtin {
        name: "ocp4-control-plane",
        description: "OpenShift 4 control-plane node: /etc/kubernetes (manifests, static pod \
                      resources, kubelet configuration, kubeconfigs), kubelet, CRI-O",
        paths: &[
            "/etc/kubernetes",
            "/var/lib/kubelet/config.yaml",
            "/etc/systemd/system/kubelet.service.d",
            "/etc/containers",
            "/etc/crio",
            "/etc/machine-config-daemon",
            ANCHORS,
        ],
        markers: &[
            "/etc/kubernetes/static-pod-resources",
            "/etc/machine-config-daemon",
        ],
    },
    Builtin {
        name: "ocp4-worker",
        description: "OpenShift 4 worker node: kubelet configuration and kubeconfig, CRI-O",
        paths: &[
            "/etc/kubernetes/kubelet.conf",
            "/etc/kubernetes/kubelet-ca.crt",
            "/etc/kubernetes/kubeconfig",
            "/var/lib/kubelet/config.yaml",
            "/etc/systemd/system/kubelet.service.d",
            "/etc/containers",
            "/etc/crio",
            "/etc/machine-config-daemon",
            ANCHORS,
        ],
        markers: &["/etc/machine-config-daemon"],
    },
    Builtin {
        name: "kubeadm-control-plane",
        description: "kubeadm control-plane node: /etc/kubernetes (manifests, pki, \
                      kubeconfigs), kubelet configuration and drop-ins",
        paths: &[
            "/etc/kubernetes",
            "/var/lib/kubelet/config.yaml",
            "/var/lib/kubelet/kubeadm-flags.env",
            "/etc/systemd/system/kubelet.service.d",
            "/usr/lib/systemd/system/kubelet.service.d",
            "/etc/default/kubelet",
            "/etc/containers",
            "/etc/containerd",
            ANCHORS,
            "/usr/local/share/ca-certificates",
        ],
        markers: &[
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
            "/var/lib/kubelet/kubeadm-flags.env",
        ],
    },
    Builtin {
        name: "kubeadm-node",
        description: "kubeadm worker node: kubelet kubeconfig, cluster CA, kubelet \
                      configuration and drop-ins",
        paths: &[
            "/etc/kubernetes/kubelet.conf",
            "/etc/kubernetes/pki/ca.crt",
            "/var/lib/kubelet/config.yaml",
            "/var/lib/kubelet/kubeadm-flags.env",
            "/etc/systemd/system/kubelet.service.d",
            "/usr/lib/systemd/system/kubelet.service.d",
            "/etc/default/kubelet",
            "/etc/containers",
            "/etc/containerd",
            ANCHORS,
            "/usr/local/share/ca-certificates",
        ],
        markers: &["/var/lib/kubelet/kubeadm-flags.env"],
    },
];

/// The built-in presets, in a fixed order.
pub fn builtin() -> Vec<Preset> {
    BUILTINS
        .iter()
        .map(|b| Preset {
            name: b.name.into(),
            description: b.description.into(),
            paths: b.paths.iter().map(|p| (*p).into()).collect(),
            markers: b.markers.iter().map(|p| (*p).into()).collect(),
            origin: "built-in".into(),
        })
        .collect()
}

/// `path` (absolute, as on the host) below `root`.
pub fn under_root(root: &Path, path: &str) -> std::path::PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// `path` (absolute, as the host names it) with `..` and the symlinks of the directories
/// above it resolved as `cd -P` would on that host, inside `root` (an absolute link restarts
/// from `root`, never from the running system's `/`); the last component kept as given.
/// RHCOS's `/opt` is a link to `var/opt`: `/opt/agent/etc` resolves to `/var/opt/agent/etc`.
pub fn resolve_in_root(root: &Path, path: &str) -> String {
    use std::collections::VecDeque;
    let parts = |p: &str| -> VecDeque<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .collect()
    };
    let mut todo = parts(path);
    let last = todo.pop_back();
    let mut done: Vec<String> = Vec::new();
    // As many links as Linux follows in one lookup.
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let at = under_root(root, &format!("{}/{c}", done.join("/")));
        match std::fs::read_link(&at) {
            Ok(target) if hops < 40 => {
                hops += 1;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for t in parts(&target).into_iter().rev() {
                    todo.push_front(t);
                }
            }
            _ => done.push(c),
        }
    }
    done.extend(last);
    format!("/{}", done.join("/"))
}

/// Does `pattern` (a preset path, possibly with a glob) cover `path`: match it, or name one
/// of the directories above it?
pub fn covers(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    if path == pattern || path.starts_with(&format!("{pattern}/")) {
        return true;
    }
    let Ok(glob) = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
    else {
        return false;
    };
    let m = glob.compile_matcher();
    // The pattern or one of the directories above `path`.
    let mut p = Path::new(path);
    loop {
        if m.is_match(p) {
            return true;
        }
        match p.parent() {
            Some(parent) if parent != p => p = parent,
            _ => return false,
        }
    }
}

/// The presets among `all` whose markers all exist below `root`, less those whose every
/// path another picked preset covers (the more specific role wins). Empty when none
/// matched.
pub fn auto<'a>(all: &'a [Preset], root: &Path) -> Vec<&'a Preset> {
    let matched: Vec<&Preset> = all
        .iter()
        .filter(|p| {
            !p.markers.is_empty()
                && p.markers
                    .iter()
                    .all(|m| std::fs::symlink_metadata(under_root(root, m)).is_ok())
        })
        .collect();
    let covered_by = |p: &Preset, q: &Preset| {
        p.paths
            .iter()
            .all(|path| q.paths.iter().any(|pat| covers(pat, path)))
    };
    matched
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            !matched.iter().enumerate().any(|(j, q)| {
                *i != j
                    && covered_by(p, q)
                    // Two presets covering each other: keep the first.
                    && !(covered_by(q, p) && j > *i)
            })
        })
        .map(|(_, p)| *p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_absolute_and_named_uniquely() {
        let all = builtin();
        assert_eq!(all.len(), 7);
        for p in &all {
            assert!(p.paths.iter().chain(&p.markers).all(|x| x.starts_with('/')));
            assert_eq!(all.iter().filter(|q| q.name == p.name).count(), 1);
        }
    }

    #[test]
    fn coverage_follows_ancestors_and_globs() {
        assert!(covers("/etc/origin", "/etc/origin/node"));
        assert!(covers("/etc/origin", "/etc/origin"));
        assert!(!covers("/etc/origin", "/etc/origin-x"));
        assert!(covers(
            "/etc/sysconfig/atomic-openshift-*",
            "/etc/sysconfig/atomic-openshift-node"
        ));
        assert!(covers("/etc/sysconfig/docker*", "/etc/sysconfig/docker*"));
        assert!(!covers("/etc/sysconfig/docker*", "/etc/sysconfig/flanneld"));
    }

    #[test]
    fn auto_prefers_the_role_that_covers_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let all = builtin();
        assert!(auto(&all, dir.path()).is_empty());
        for m in ["etc/origin/master", "etc/origin/node", "etc/etcd/etcd.conf"] {
            let p = dir.path().join(m);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
        }
        let names: Vec<&str> = auto(&all, dir.path())
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["ocp3-master"]);

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/kubernetes/static-pod-resources")).unwrap();
        std::fs::create_dir_all(dir.path().join("etc/machine-config-daemon")).unwrap();
        let names: Vec<&str> = auto(&all, dir.path())
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["ocp4-control-plane"]);
    }

    #[test]
    fn paths_resolve_through_links_inside_the_root() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("var/opt/agent/etc")).unwrap();
        symlink("var/opt", root.join("opt")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/opt/agent/etc"),
            "/var/opt/agent/etc"
        );
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/var/opt", root.join("etc/abs")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/etc/abs/agent/x"),
            "/var/opt/agent/x"
        );
        // The last component is kept, `..` applies to what the links resolved to.
        assert_eq!(resolve_in_root(root, "/opt"), "/opt");
        assert_eq!(resolve_in_root(root, "/opt/agent/../x"), "/var/opt/x");
        // A loop ends.
        symlink("/loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in_root(root, "/loop/x"), "/loop/x");
    }
}
