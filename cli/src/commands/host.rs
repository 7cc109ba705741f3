//! `cairn host compare SNAP`: is this host fit to receive a host snapshot's restore?

use super::Reader;
use crate::args::{Global, SnapshotFilter};
use crate::exit::Code;
use crate::output;
use anyhow::{bail, Context, Result};
use cairn_store::host::compare::{self, Comparison};
use cairn_store::host::inventory;
use cairn_store::{snapshots, Role};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `cairn host …`.
#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// Compare the inventory a host snapshot recorded (packages, OS release, kernel) with
    /// this host. Exit 0: fit to receive the restore; 5: not fit (reasons listed).
    #[command(after_help = "\
Fit means: the same OS release (ID and VERSION_ID), the same package manager, and every \
recorded package installed at its recorded version(s). Extra packages and another kernel \
release are listed but do not make the host unfit.

Example:
  cairn host compare latest --host master-0 -i id.txt && cairn restore latest --host master-0 \
-i id.txt --target / --dry-run")]
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Snapshot: id, unique id prefix, or `latest`.
    pub snapshot: String,
    /// Compare with the host below DIR (os-release and the package database read there; the
    /// kernel is the running system's).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

pub fn run(g: &Global, c: HostCommand) -> Result<Code> {
    match c {
        HostCommand::Compare(a) => compare_run(g, &a),
    }
}

fn compare_run(g: &Global, a: &CompareArgs) -> Result<Code> {
    let reader = Reader::open(g)?;
    if reader.repo.role() != Role::Full {
        return Err(cairn_store::Error::NeedsIdentity {
            what: "host compare (it reads the recorded inventory's content)",
        }
        .into());
    }
    // Only host backups hold an inventory: `latest` is the latest of those unless the
    // filter names another kind.
    let mut filter: snapshots::Filter = (&a.filter).into();
    if filter.source.is_none() {
        filter.source = Some(cairn_format::snapshot::SourceKind::Paths);
        filter.made_by = Some("host");
    }
    let (id, snap) = snapshots::resolve(&reader.repo, &a.snapshot, &filter)?;
    let mut loader = reader.loader();
    let Some(recorded) = compare::recorded(&mut loader, &snap.tree)? else {
        bail!(
            "snapshot {} holds no host inventory ({}): name a host backup (`cairn snapshots --source host`), or take one with `cairn backup host`",
            id.short(),
            inventory::DIR
        );
    };
    let here = compare::current(&a.root).context("taking this host's inventory")?;
    let c = compare::compare(&recorded, &here);
    if g.json {
        output::json(&serde_json::json!({
            "snapshot": id.to_hex(),
            "recorded_host": recorded.hostname,
            "comparison": c,
        }))?;
    } else if !g.quiet {
        print(&c, &id.short(), recorded.hostname.as_deref())?;
    }
    Ok(if c.fit { Code::Ok } else { Code::Unfit })
}

/// At most this many packages of each list are printed (all are in --json).
const SHOWN: usize = 50;

fn print(c: &Comparison, id: &str, host: Option<&str>) -> Result<()> {
    let show = |p: &compare::Pair| {
        format!(
            "{} (recorded) / {} (this host){}",
            p.recorded.as_deref().unwrap_or("-"),
            p.host.as_deref().unwrap_or("-"),
            if p.same { "" } else { "  DIFFERENT" }
        )
    };
    crate::outln!(
        "snapshot {id} of host {}: inventory compared with this host",
        host.unwrap_or("?")
    )?;
    crate::outln!("  os:              {}", show(&c.os))?;
    crate::outln!("  kernel:          {}", show(&c.kernel))?;
    crate::outln!("  package manager: {}", show(&c.package_manager))?;
    if c.machineconfig.recorded.is_some() || c.machineconfig.host.is_some() {
        crate::outln!("  machineconfig:   {}", show(&c.machineconfig))?;
    }
    crate::outln!(
        "  packages:        {} same, {} missing, {} other version, {} extra",
        c.matching,
        c.missing.len(),
        c.different.len(),
        c.extra.len()
    )?;
    for p in c.missing.iter().take(SHOWN) {
        crate::outln!("missing  {} {} {}", p.name, p.arch, p.versions.join(","))?;
    }
    for d in c.different.iter().take(SHOWN) {
        crate::outln!(
            "version  {} {} recorded {} installed {}",
            d.name,
            d.arch,
            d.recorded.join(","),
            d.installed.join(",")
        )?;
    }
    for p in c.extra.iter().take(SHOWN) {
        crate::outln!("extra    {} {} {}", p.name, p.arch, p.versions.join(","))?;
    }
    let longest = c.missing.len().max(c.different.len()).max(c.extra.len());
    if longest > SHOWN {
        crate::outln!("  (lists cut at {SHOWN} entries each; --json has them all)")?;
    }
    for n in &c.notes {
        crate::outln!("note: {n}")?;
    }
    if c.fit {
        crate::outln!("verdict: fit — this host can receive the restore")?;
    } else {
        crate::outln!("verdict: unfit — {}", c.reasons.join("; "))?;
    }
    Ok(())
}
