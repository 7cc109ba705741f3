//! `cairn repair index` and `cairn repair snapshots`: rebuild the index from pack trailers,
//! and rewrite snapshots whose files lost their content.

use crate::args::Global;
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::Result;
use cairn_store::repair::{self, IndexRepairReport, SnapshotRepairReport};
use clap::{Args, Subcommand};
use serde_json::json;
use std::sync::Arc;

/// Listed lost paths per snapshot in human output.
const MAX_LISTED: usize = 50;

/// `cairn repair` subcommands.
#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from pack trailers. Data packs need the identity; with a write key
    /// their entries are kept from the existing index.
    Index(RepairArgs),
    /// Rewrite snapshots whose files or directories are lost: drop them, tag the new snapshot
    /// `repaired` and remove the original.
    Snapshots(RepairArgs),
}

/// Options shared by the repair subcommands.
#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Report what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(g: &Global, c: RepairCommand) -> Result<Code> {
    let repo = Arc::new(credentials::open_uncached(g)?);
    let dry_run = match &c {
        RepairCommand::Index(a) | RepairCommand::Snapshots(a) => a.dry_run,
    };
    if !dry_run {
        cairn_store::policy::ensure_may_remove(&repo, "repair")?;
    }
    match c {
        RepairCommand::Index(a) => {
            let r = repair::repair_index(&repo, a.dry_run)?;
            print_index(g, &r, a.dry_run)?;
            Ok(partial_if(
                !r.damaged.is_empty() || r.packs_unreadable_needs_identity > 0,
            ))
        }
        RepairCommand::Snapshots(a) => {
            let r = repair::repair_snapshots(&repo, a.dry_run)?;
            print_snapshots(g, &r, a.dry_run)?;
            Ok(partial_if(!r.failed.is_empty()))
        }
    }
}

/// Exit code 3 when something could not be repaired (it is listed on stderr and in --json).
fn partial_if(incomplete: bool) -> Code {
    if incomplete {
        Code::Partial
    } else {
        Code::Ok
    }
}

fn print_index(g: &Global, r: &IndexRepairReport, dry_run: bool) -> Result<()> {
    if g.json {
        return output::json(&json!({
            "dry_run": dry_run,
            "packs_read": r.packs_read,
            "packs_kept_from_index": r.packs_kept_from_index,
            "packs_unreadable_needs_identity": r.packs_unreadable_needs_identity,
            "data_needs_identity": r.data_needs_identity,
            "packs_condemned": r.packs_condemned,
            "blobs": r.blobs,
            "damaged": r.damaged.iter().map(|(p, why)| json!({"pack": p, "reason": why})).collect::<Vec<_>>(),
            "index_written": r.written.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "index_removed": r.removed,
        }));
    }
    for (p, why) in &r.damaged {
        output::warn(format_args!(
            "skipped damaged pack {p}: {why}; move it out of the repository (keep it: parts of it may still be read), then run `cairn repair snapshots`"
        ));
    }
    if g.quiet {
        return Ok(());
    }
    let verb = if dry_run { "would index" } else { "indexed" };
    crate::outln!(
        "{verb} {} from {}; {} skipped, {} left out",
        output::count(r.blobs, "blob"),
        output::count(r.packs_read, "pack trailer"),
        output::count(r.damaged.len() as u64, "damaged pack"),
        output::count(r.packs_condemned, "condemned pack")
    )?;
    if r.data_needs_identity {
        crate::outln!(
            "data packs need the identity to be read (a write key cannot): {} kept from the existing index, {} not listed anywhere and left out; run `cairn repair index` with the identity to rebuild them",
            r.packs_kept_from_index, r.packs_unreadable_needs_identity
        )?;
    }
    if dry_run {
        crate::outln!("would replace {} index objects", r.removed)?;
    } else {
        crate::outln!(
            "wrote {} index objects, removed {} old ones",
            r.written.len(),
            r.removed
        )?;
    }
    Ok(())
}

fn print_snapshots(g: &Global, r: &SnapshotRepairReport, dry_run: bool) -> Result<()> {
    if g.json {
        return output::json(&json!({
            "dry_run": dry_run,
            "checked": r.checked,
            "missing_packs": r.missing_packs,
            "unindexed_packs": r.unindexed_packs,
            "repaired": r.repaired.iter().map(|s| json!({
                "original": s.original.to_hex(),
                "new": s.new.map(|i| i.to_hex()),
                "lost_count": s.lost.len(),
                "lost": s.lost.iter().map(|p| output::path(p)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "failed": r.failed.iter().map(|(s, why)| json!({"snapshot": s, "reason": why})).collect::<Vec<_>>(),
        }));
    }
    for (s, why) in &r.failed {
        output::warn(format_args!("could not repair {s}: {why}"));
    }
    if g.quiet {
        return Ok(());
    }
    for s in &r.repaired {
        match s.new {
            Some(n) => crate::outln!(
                "snapshot {} → {}: {} lost paths removed",
                s.original.short(),
                n.short(),
                s.lost.len()
            ),
            None => crate::outln!(
                "snapshot {} would lose {} paths",
                s.original.short(),
                s.lost.len()
            ),
        }?;
        for p in s.lost.iter().take(MAX_LISTED) {
            crate::outln!("  lost {}", output::path(p))?;
        }
        if s.lost.len() > MAX_LISTED {
            crate::outln!("  … and {} more", s.lost.len() - MAX_LISTED)?;
        }
    }
    let verb = if dry_run { "would repair" } else { "repaired" };
    crate::outln!(
        "checked {} snapshots, {verb} {}, {} could not be repaired; {} indexed packs are missing from storage",
        r.checked,
        r.repaired.len(),
        r.failed.len(),
        r.missing_packs
    )?;
    if r.missing_packs > 0 && !dry_run {
        crate::outln!("run `cairn repair index` to drop the missing packs from the index")?;
    }
    if r.unindexed_packs > 0 && !r.repaired.is_empty() {
        crate::outln!(
            "{} packs are stored but in no index: run `cairn repair index` first, files listed as lost may be in them",
            r.unindexed_packs
        )?;
    }
    Ok(())
}
