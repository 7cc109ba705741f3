//! Comparing the inventory a host snapshot recorded with a running host: is the host fit to
//! receive the restore? It is when it runs the same OS release and has every recorded
//! package at the recorded version(s). Extra packages and another kernel release are
//! reported but do not make it unfit (a rebuilt host may boot another kernel; the kernel
//! packages themselves are compared as packages).

use super::inventory::{self, Packages};
use super::HostError;
use cairn_format::tree::NodeKind;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// An inventory, recorded or taken from the running host.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// `rpm` or `dpkg`.
    pub package_manager: Option<String>,
    /// `NAME\tVERSION\tARCH` lines.
    pub packages: Option<String>,
    /// os-release content.
    pub os_release: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Name of the MachineConfig the node runs (OpenShift 4).
    pub machineconfig: Option<String>,
    /// Why `packages` is missing from a running host's inventory.
    pub no_packages: Option<String>,
}

/// `metadata.name` of a MachineConfig document.
pub fn machineconfig_name(json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v.get("metadata")?.get("name")?.as_str().map(str::to_string)
}

/// The running host's inventory: files and packages below `root`, kernel and host name of
/// this system.
pub fn current(root: &Path) -> Result<Inventory, HostError> {
    let (kernel, hostname) = inventory::uname();
    let mut inv = Inventory {
        kernel: Some(kernel),
        hostname: Some(hostname),
        ..Inventory::default()
    };
    match Packages::of(root, inventory::PACKAGES_LIMIT)? {
        Ok(found) => {
            inv.packages = Some(String::from_utf8_lossy(&found.lines).into_owned());
            inv.package_manager = Some(found.manager.name().into());
        }
        Err(why) => inv.no_packages = Some(why),
    }
    if let Some((_, text)) = inventory::os_release(root)? {
        inv.os_release = Some(String::from_utf8_lossy(&text).into_owned());
    }
    if let Ok(Some(bytes)) = inventory::read_small_in_root(root, inventory::MCD_CURRENT) {
        inv.machineconfig = machineconfig_name(&bytes);
    }
    Ok(inv)
}

/// One package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Package {
    /// Name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Version(s) (several for rpm's install-only packages such as kernels).
    pub versions: Vec<String>,
}

/// A package installed at other versions than recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// Name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Recorded version(s).
    pub recorded: Vec<String>,
    /// Installed version(s).
    pub installed: Vec<String>,
}

/// A value on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// In the snapshot.
    pub recorded: Option<String>,
    /// On this host.
    pub host: Option<String>,
    /// Equal (both absent counts as equal).
    pub same: bool,
}

impl Pair {
    fn new(recorded: Option<String>, host: Option<String>) -> Pair {
        let same = recorded == host;
        Pair {
            recorded,
            host,
            same,
        }
    }
}

/// The result of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Fit to receive the restore.
    pub fit: bool,
    /// Why not, one line each.
    pub reasons: Vec<String>,
    /// OS release (`ID VERSION_ID`, with PRETTY_NAME for people).
    pub os: Pair,
    /// Kernel release.
    pub kernel: Pair,
    /// Package manager.
    pub package_manager: Pair,
    /// MachineConfig name (OpenShift 4).
    pub machineconfig: Pair,
    /// Recorded packages not installed here.
    pub missing: Vec<Package>,
    /// Installed packages the snapshot does not list.
    pub extra: Vec<Package>,
    /// Packages installed at other versions.
    pub different: Vec<Difference>,
    /// Packages installed at the recorded versions.
    pub matching: usize,
    /// What could not be compared.
    pub notes: Vec<String>,
}

/// `(name, arch) → versions` of a packages.tsv. Lines that are not three tab-separated
/// fields are skipped. rpm's `(none):` epoch is dropped, as rpm itself shows versions.
pub fn parse_packages(tsv: &str) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in tsv.lines() {
        let mut f = line.split('\t');
        let (Some(name), Some(version), Some(arch), None) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let version = version.strip_prefix("(none):").unwrap_or(version);
        out.entry((name.into(), arch.into()))
            .or_default()
            .insert(version.into());
    }
    out
}

fn os_key(text: Option<&str>) -> Option<String> {
    let os = inventory::parse_os_release(text?);
    let id = os.get("ID").cloned().unwrap_or_default();
    let version = os.get("VERSION_ID").cloned().unwrap_or_default();
    let pretty = os
        .get("PRETTY_NAME")
        .map(|p| format!(" ({p})"))
        .unwrap_or_default();
    Some(format!("{id} {version}{pretty}"))
}

/// Compare `recorded` with `host`.
pub fn compare(recorded: &Inventory, host: &Inventory) -> Comparison {
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    let os = Pair::new(
        os_key(recorded.os_release.as_deref()),
        os_key(host.os_release.as_deref()),
    );
    match (&os.recorded, &os.host) {
        (None, _) => reasons.push(
            "the snapshot recorded no OS release: whether this host runs the same one is unknown"
                .into(),
        ),
        (Some(_), None) => reasons.push("this host has no os-release to compare".into()),
        (Some(r), Some(h)) if !os.same => {
            // PRETTY_NAME may differ in wording; ID and VERSION_ID decide.
            let core = |s: &str| s.split(" (").next().unwrap_or(s).to_string();
            if core(r) != core(h) {
                reasons.push(format!("OS release differs: recorded {r}, this host {h}"));
            }
        }
        _ => {}
    }
    let kernel = Pair::new(recorded.kernel.clone(), host.kernel.clone());
    if !kernel.same {
        notes.push(format!(
            "kernel release differs: recorded {}, running {} (not a reason to refuse; boot the \
             recorded kernel if the restored configuration depends on it)",
            kernel.recorded.as_deref().unwrap_or("-"),
            kernel.host.as_deref().unwrap_or("-")
        ));
    }
    let package_manager = Pair::new(
        recorded.package_manager.clone(),
        host.package_manager.clone(),
    );
    let machineconfig = Pair::new(recorded.machineconfig.clone(), host.machineconfig.clone());
    if let (Some(r), Some(h)) = (&machineconfig.recorded, &machineconfig.host) {
        if r != h {
            notes.push(format!(
                "MachineConfig differs: recorded {r}, this host {h} (the Machine Config \
                 Operator reconciles it; restore the recorded one only if the cluster still \
                 renders it)"
            ));
        }
    }
    let (mut missing, mut extra, mut different, mut matching) =
        (Vec::new(), Vec::new(), Vec::new(), 0);
    match (&recorded.packages, &host.packages) {
        (None, _) => reasons.push(
            "the snapshot recorded no package list: whether this host has the same packages is unknown"
                .into(),
        ),
        (Some(_), None) => reasons.push(format!(
            "this host's packages cannot be listed: {}",
            host.no_packages.as_deref().unwrap_or("no package database")
        )),
        (Some(_), Some(_)) if !package_manager.same => reasons.push(format!(
            "package manager differs: recorded {}, this host {}",
            package_manager.recorded.as_deref().unwrap_or("-"),
            package_manager.host.as_deref().unwrap_or("-")
        )),
        (Some(r), Some(h)) => {
            let (r, h) = (parse_packages(r), parse_packages(h));
            let pkg = |(name, arch): &(String, String), v: &BTreeSet<String>| Package {
                name: name.clone(),
                arch: arch.clone(),
                versions: v.iter().cloned().collect(),
            };
            for (key, rv) in &r {
                match h.get(key) {
                    None => missing.push(pkg(key, rv)),
                    Some(hv) if hv != rv => different.push(Difference {
                        name: key.0.clone(),
                        arch: key.1.clone(),
                        recorded: rv.iter().cloned().collect(),
                        installed: hv.iter().cloned().collect(),
                    }),
                    Some(_) => matching += 1,
                }
            }
            for (key, hv) in &h {
                if !r.contains_key(key) {
                    extra.push(pkg(key, hv));
                }
            }
            if !missing.is_empty() {
                reasons.push(format!(
                    "{} recorded package{} not installed",
                    missing.len(),
                    if missing.len() == 1 { " is" } else { "s are" }
                ));
            }
            if !different.is_empty() {
                reasons.push(format!(
                    "{} package{} installed at other versions",
                    different.len(),
                    if different.len() == 1 { " is" } else { "s are" }
                ));
            }
        }
    }
    Comparison {
        fit: reasons.is_empty(),
        reasons,
        os,
        kernel,
        package_manager,
        machineconfig,
        missing,
        extra,
        different,
        matching,
        notes,
    }
}

/// The inventory recorded in the snapshot whose root tree is `root`; None when it holds
/// none (not a host snapshot, or taken with `--no-inventory`). Files over
/// [`inventory::PACKAGES_LIMIT`] are refused rather than read into memory.
pub fn recorded(
    loader: &mut crate::loader::Loader,
    root: &cairn_format::Id,
) -> Result<Option<Inventory>, HostError> {
    let dir: Vec<Vec<u8>> = inventory::DIR_COMPONENTS
        .iter()
        .map(|c| c.to_vec())
        .collect();
    let Some(node) = crate::trees::find(loader, root, &dir)? else {
        return Ok(None);
    };
    let Some(sub) = node.subtree.filter(|_| node.kind == NodeKind::Dir) else {
        return Ok(None);
    };
    let tree = loader.load_tree(&sub)?;
    let mut read = |name: &str| -> Result<Option<String>, HostError> {
        let Some(n) = tree
            .get(name.as_bytes())
            .filter(|n| n.kind == NodeKind::File)
        else {
            return Ok(None);
        };
        if n.size > inventory::PACKAGES_LIMIT {
            return Err(HostError::Store(crate::Error::Invalid(format!(
                "{}/{name} records {} bytes, more than the {} an inventory file may hold",
                inventory::DIR,
                n.size,
                inventory::PACKAGES_LIMIT
            ))));
        }
        let mut bytes = Vec::with_capacity(n.size as usize);
        for id in &n.content {
            bytes.extend(loader.load(id)?);
        }
        if bytes.len() as u64 != n.size {
            return Err(HostError::Store(crate::Error::Invalid(format!(
                "{}/{name} has {} bytes of content but the snapshot recorded {}: the snapshot \
                 is damaged",
                inventory::DIR,
                bytes.len(),
                n.size
            ))));
        }
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let line = |s: Option<String>| s.map(|s| s.trim_end().to_string());
    Ok(Some(Inventory {
        package_manager: line(read(inventory::PACKAGE_MANAGER)?),
        packages: read(inventory::PACKAGES)?,
        os_release: read(inventory::OS_RELEASE)?,
        kernel: line(read(inventory::KERNEL)?),
        hostname: line(read(inventory::HOSTNAME)?),
        machineconfig: read(inventory::MACHINECONFIG)?
            .and_then(|j| machineconfig_name(j.as_bytes())),
        no_packages: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(pkgs: &str, os: &str, kernel: &str) -> Inventory {
        Inventory {
            package_manager: Some("rpm".into()),
            packages: Some(pkgs.into()),
            os_release: Some(os.into()),
            kernel: Some(kernel.into()),
            hostname: Some("h".into()),
            ..Inventory::default()
        }
    }

    const RHEL: &str = "ID=\"rhel\"\nVERSION_ID=\"8.6\"\nPRETTY_NAME=\"RHEL 8.6\"\n";

    #[test]
    fn same_inventory_is_fit() {
        let a = inv("a\t(none):1-1\tx86_64\nb\t2:3-4\tnoarch\n", RHEL, "4.18");
        let c = compare(&a, &a);
        assert!(c.fit, "{:?}", c.reasons);
        assert_eq!(c.matching, 2);
    }

    #[test]
    fn mismatches_are_listed() {
        let rec = inv(
            "a\t1-1\tx86_64\nb\t1-1\tx86_64\nkernel\t1\tx86_64\nkernel\t2\tx86_64\n",
            RHEL,
            "4.18",
        );
        let host = inv(
            "b\t1-2\tx86_64\nc\t1\tnoarch\nkernel\t1\tx86_64\nkernel\t2\tx86_64\n",
            "ID=rhel\nVERSION_ID=9.2\n",
            "5.14",
        );
        let c = compare(&rec, &host);
        assert!(!c.fit);
        assert_eq!(c.missing.len(), 1);
        assert_eq!(c.missing[0].name, "a");
        assert_eq!(c.extra[0].name, "c");
        assert_eq!(c.different[0].installed, ["1-2"]);
        assert_eq!(c.matching, 1);
        assert!(c.reasons.iter().any(|r| r.contains("OS release")));
        assert!(c.notes.iter().any(|r| r.contains("kernel")));
        // Only extra packages and another kernel: fit.
        let host = inv(
            "a\t1-1\tx86_64\nb\t1-1\tx86_64\nkernel\t1\tx86_64\nkernel\t2\tx86_64\nz\t1\tx\n",
            RHEL,
            "5.0",
        );
        assert!(compare(&rec, &host).fit);
    }

    #[test]
    fn what_the_snapshot_did_not_record_cannot_be_fit() {
        let host = inv("a\t1\tx\n", RHEL, "4.18");
        let mut rec = host.clone();
        rec.os_release = None;
        let c = compare(&rec, &host);
        assert!(
            !c.fit && c.reasons[0].contains("no OS release"),
            "{:?}",
            c.reasons
        );
        let mut rec = host.clone();
        (rec.packages, rec.package_manager) = (None, None);
        let c = compare(&rec, &host);
        assert!(
            !c.fit && c.reasons[0].contains("no package list"),
            "{:?}",
            c.reasons
        );
    }
}
