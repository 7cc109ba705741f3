//! Static pod resources: the latest revision directory of each control-plane component, as
//! the platform's `cluster-backup.sh` selects them.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Default location on control-plane hosts.
pub const DEFAULT_DIR: &str = "/etc/kubernetes/static-pod-resources";

/// Components whose revision directories (`<component>-pod-<N>`) are kept.
pub const COMPONENTS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
];

/// One selected revision directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// Component name.
    pub component: &'static str,
    /// Revision number.
    pub revision: u64,
    /// The directory.
    pub path: PathBuf,
}

/// The highest-numbered (numerically, not lexically) revision directory of each component
/// present in `dir`. Components with no revision directory are left out.
pub fn latest(dir: &Path) -> Result<Vec<Revision>> {
    let mut best: Vec<Option<Revision>> = vec![None; COMPONENTS.len()];
    let entries = std::fs::read_dir(dir).map_err(Error::file(
        "reading static pod resources in",
        dir.display(),
    ))?;
    for entry in entries {
        let entry = entry.map_err(Error::file("reading", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        for (i, component) in COMPONENTS.iter().enumerate() {
            let Some(rev) = name
                .strip_prefix(component)
                .and_then(|r| r.strip_prefix("-pod-"))
                .and_then(|r| r.parse::<u64>().ok())
            else {
                continue;
            };
            if best[i].as_ref().is_none_or(|b| rev > b.revision) {
                best[i] = Some(Revision {
                    component,
                    revision: rev,
                    path: entry.path(),
                });
            }
        }
    }
    Ok(best.into_iter().flatten().collect())
}

/// `kube-apiserver=7,kube-scheduler=5,…` for the snapshot's facts.
pub fn describe(revs: &[Revision]) -> String {
    revs.iter()
        .map(|r| format!("{}={}", r.component, r.revision))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_numeric_maximum_per_component() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "kube-apiserver-pod-9",
            "kube-apiserver-pod-10",
            "kube-apiserver-pod-2",
            "kube-scheduler-pod-3",
            "etcd-pod-4",
            "etcd-pod-x",
            "kube-apiserver-certs",
        ] {
            std::fs::create_dir(d.path().join(n)).unwrap();
        }
        std::fs::write(d.path().join("kube-controller-manager-pod-99"), b"a file").unwrap();
        let revs = latest(d.path()).unwrap();
        assert_eq!(describe(&revs), "kube-apiserver=10,kube-scheduler=3,etcd=4");
        assert!(revs[0].path.ends_with("kube-apiserver-pod-10"));
    }
}
