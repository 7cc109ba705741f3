//! `cairn backup host [--preset NAME…|auto] [--root DIR] [PATH…]`: a host's configuration by
//! node role, with the host inventory in `/.cairn/inventory`.

use super::paths::walk_options;
use super::session;
use crate::args::{BackupCommon, Global, WalkArgs};
use anyhow::{bail, Result};
use cairn_store::backup::host::{self as engine, host_root, Selection};
use cairn_store::backup::Saved;
use cairn_store::host::config;
use cairn_store::host::presets::{self, Preset};
use clap::Args;
use std::path::{Path, PathBuf};

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
    /// host paths (/etc/kubernetes, not DIR/etc/kubernetes). Packages are listed from the
    /// database below DIR; kernel and hostname are the running system's.
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

pub fn run(g: &Global, a: &HostArgs) -> Result<Saved> {
    if a.presets.is_empty() && a.paths.is_empty() {
        return Err(crate::exit::usage(
            "backup host needs --preset NAME (or auto) or paths",
            "cairn backup host --preset auto",
        ));
    }
    let root = host_root(&a.root)?;
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
    let sel = Selection::new(root, chosen, auto, &a.paths, !a.no_inventory)?;
    if !sel.absent.is_empty() && !g.quiet && !g.json {
        eprintln!(
            "not on this host, recorded as absent: {}",
            sel.absent.join(", ")
        );
    }
    let opts = walk_options(&a.walk)?;
    let s = session(g, &a.common)?;
    Ok(engine::host(s, &sel, opts, &mut |n| {
        crate::output::note(format_args!("{n}"))
    })?)
}
