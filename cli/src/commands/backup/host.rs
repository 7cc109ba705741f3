//! `cairn backup host [--preset NAME…|auto] [--root DIR] [PATH…]`: a host's configuration by
//! node role, with the host inventory in `/.cairn/inventory`.

use super::paths::walk_options;
use super::session;
use crate::args::{BackupCommon, Global, WalkArgs};
use anyhow::{bail, Context, Result};
use cairn_format::snapshot::SourceKind;
use cairn_store::backup::paths::{absolute_paths, walk_recording};
use cairn_store::backup::{Produced, Saved};
use cairn_store::host::presets::{self, under_root, Preset};
use cairn_store::host::{config, inventory, place};
use clap::Args;
use std::path::{Component, Path, PathBuf};

#[derive(Args, Debug)]
#[command(after_help = "\
Preset paths missing on this host are recorded as absent (fact host.absent) and are not an \
error; paths named on the command line must exist. `auto` picks the presets whose marker \
files all exist and says which. The inventory (packages, os-release, kernel, hostname, \
MachineConfig) is stored in /.cairn/inventory of the snapshot.

Examples:
  cairn backup host --preset auto
  cairn backup host --preset ocp4-control-plane /etc/site-ca
  cairn backup host --preset kubeadm-control-plane --root /mnt/sysimage")]
pub struct HostArgs {
    /// A preset to back up (see `cairn presets list`), or `auto`: the presets whose marker
    /// files exist on this host. Repeatable.
    #[arg(long = "preset", value_name = "NAME")]
    pub presets: Vec<String>,
    /// Read the host below DIR (a mounted system image, a chroot): the snapshot still records
    /// host paths (/etc/kubernetes, not DIR/etc/kubernetes). Packages, kernel and hostname of
    /// the inventory are always the running system's.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Do not record the host inventory.
    #[arg(long)]
    pub no_inventory: bool,
    /// Configuration file with user presets ([presets.NAME]).
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More paths to back up (host paths; they must exist).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub common: BackupCommon,
    #[command(flatten)]
    pub walk: WalkArgs,
}

/// The presets the arguments name (`auto` resolved), and whether `auto` chose them.
pub fn select(all: &[Preset], names: &[String], root: &Path) -> Result<(Vec<Preset>, bool)> {
    let mut out: Vec<Preset> = Vec::new();
    let mut auto = false;
    for name in names {
        if name == "auto" {
            auto = true;
            let picked = presets::auto(all, root);
            if picked.is_empty() {
                let markers: Vec<String> = all
                    .iter()
                    .filter(|p| !p.markers.is_empty())
                    .map(|p| format!("  {}: {}", p.name, p.markers.join(" + ")))
                    .collect();
                bail!(
                    "--preset auto: no preset's marker files all exist below {}; this host \
                     plays none of these roles:\n{}\nname the presets (--preset NAME) or the \
                     paths to back up",
                    root.display(),
                    markers.join("\n")
                );
            }
            out.extend(picked.into_iter().cloned());
        } else {
            let p = all.iter().find(|p| &p.name == name).ok_or_else(|| {
                crate::exit::usage(
                    format!("no preset named {name:?}"),
                    "`cairn presets list` shows them (add your own in cairn.toml)",
                )
            })?;
            out.push(p.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.name.clone()));
    Ok((out, auto))
}

/// The host paths a preset path names below `root`: itself, or what its glob (last
/// component) matches. Empty when absent.
fn expand(root: &Path, pattern: &str) -> Result<Vec<String>> {
    let p = Path::new(pattern);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?', '[']) {
        let exists = std::fs::symlink_metadata(under_root(root, pattern)).is_ok();
        return Ok(if exists {
            vec![pattern.to_string()]
        } else {
            Vec::new()
        });
    }
    let parent = p.parent().unwrap_or(Path::new("/"));
    let glob = globset::Glob::new(&name)
        .with_context(|| format!("preset path {pattern:?} is not a valid glob"))?
        .compile_matcher();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(under_root(root, &parent.to_string_lossy())) {
        for e in entries.flatten() {
            if glob.is_match(e.file_name()) {
                out.push(parent.join(e.file_name()).display().to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// An explicitly named path as a host path: resolved like `cairn backup PATH` when the root
/// is /, else absolute and taken lexically.
fn explicit(root: &Path, paths: &[PathBuf]) -> Result<Vec<String>> {
    let slash = root == Path::new("/");
    let out = if slash {
        absolute_paths(paths)?
    } else {
        paths
            .iter()
            .map(|p| {
                if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
                    bail!(
                        "{}: with --root, name host paths absolutely (without ..)",
                        p.display()
                    );
                }
                Ok(p.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?
    };
    for p in &out {
        if std::fs::symlink_metadata(under_root(root, p)).is_err() {
            let below = if slash {
                String::new()
            } else {
                format!(" below {}", root.display())
            };
            bail!(
                "{p} does not exist{below}; a path named on the command line must exist (only \
                 preset paths may be absent); nothing was saved"
            );
        }
    }
    Ok(out)
}

pub fn run(g: &Global, a: &HostArgs) -> Result<Saved> {
    if a.presets.is_empty() && a.paths.is_empty() {
        return Err(crate::exit::usage(
            "backup host needs --preset NAME (or auto) or paths",
            "cairn backup host --preset auto",
        ));
    }
    let root = std::fs::canonicalize(&a.root)
        .with_context(|| format!("host root {}", a.root.display()))?;
    if !root.is_dir() {
        bail!("host root {} is not a directory", root.display());
    }
    let all = config::load(a.config.as_deref())?;
    let (chosen, auto) = select(&all, &a.presets, &root)?;
    if auto && !g.quiet && !g.json {
        for p in &chosen {
            eprintln!(
                "preset auto: picked {} ({} exist{})",
                p.name,
                p.markers.join(" and "),
                if p.markers.len() == 1 { "s" } else { "" }
            );
        }
    }
    let mut present = explicit(&root, &a.paths)?;
    let mut absent = Vec::new();
    for p in &chosen {
        for pattern in &p.paths {
            let found = expand(&root, pattern)?;
            if found.is_empty() {
                absent.push(pattern.clone());
            }
            present.extend(found);
        }
    }
    present.sort();
    present.dedup();
    absent.sort();
    absent.dedup();
    if present.is_empty() && a.no_inventory {
        bail!(
            "none of the preset paths exists below {} and the inventory is off; nothing to \
             back up, nothing was saved",
            root.display()
        );
    }
    if !absent.is_empty() && !g.quiet && !g.json {
        eprintln!(
            "not on this host, recorded as absent: {}",
            absent.join(", ")
        );
    }
    let mut recorded = present.clone();
    if !a.no_inventory {
        recorded.push(inventory::DIR.into());
        recorded.sort();
    }
    let walked: Vec<PathBuf> = present.iter().map(PathBuf::from).collect();
    let mut opts = walk_options(&a.walk)?;
    opts.root = root.clone();
    let mut s = session(g, &a.common)?;
    let mut produced = if walked.is_empty() {
        Produced::empty(SourceKind::Paths, recorded.clone())
    } else {
        walk_recording(&mut s, SourceKind::Paths, recorded, &walked, opts)?
    };
    let names: Vec<&str> = chosen.iter().map(|p| p.name.as_str()).collect();
    if !names.is_empty() {
        produced
            .facts
            .push(("host.presets".into(), names.join(",")));
        produced.facts.push((
            "host.preset_selection".into(),
            if auto { "auto" } else { "named" }.into(),
        ));
    }
    if root != Path::new("/") {
        produced
            .facts
            .push(("host.root".into(), root.display().to_string()));
    }
    produced
        .facts
        .push(("host.absent".into(), absent.join("\n")));
    if !a.no_inventory {
        let policy = s.repo().cdc_policy();
        let saved = inventory::save(&mut s.saver, &root, s.time_ns, policy)
            .context("taking the host inventory; nothing was saved")?;
        for n in &saved.notes {
            eprintln!("cairn: note: {n}");
        }
        produced.stats.files += saved.nodes.len() as u64;
        produced.stats.files_read += saved.nodes.len() as u64;
        produced.stats.dirs += 2;
        produced.stats.bytes += saved.nodes.iter().map(|n| n.size).sum::<u64>();
        let saver = &mut s.saver;
        place(
            &mut produced.root,
            &inventory::DIR_COMPONENTS,
            saved.nodes,
            s.time_ns,
            &mut |t| saver.save_tree(t),
        )
        .context("placing the inventory in the snapshot")?;
        produced.facts.extend(saved.facts);
    }
    Ok(s.finish(produced)?)
}
