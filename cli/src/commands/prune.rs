//! `cairn prune`: delete what no snapshot needs, safely while backups run.

use crate::args::Global;
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::Result;
use cairn_store::prune::{self, PruneOptions, PruneReport};
use cairn_store::Repository;
use clap::Args;
use serde_json::{json, Value};
use std::sync::Arc;

/// Arguments of `cairn prune`.
#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub options: PruneFlags,
}

/// Prune options, shared with `forget --prune`.
#[derive(Args, Debug, Clone)]
pub struct PruneFlags {
    /// Leave at most this share of the repository's blob bytes unused, in percent: partly
    /// used packs are repacked, most wasteful first, until it holds. Repacking data packs needs
    /// the identity; with a write key only wholly unused packs are deleted.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0, value_parser = percent)]
    pub max_unused: f64,
    /// Report what would be deleted and repacked; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not between 0 and 100"))
    }
}

impl PruneFlags {
    pub(crate) fn options(&self) -> PruneOptions {
        PruneOptions {
            max_unused: self.max_unused / 100.0,
            dry_run: self.dry_run,
        }
    }
}

pub fn run(g: &Global, a: PruneArgs) -> Result<Code> {
    let repo = Arc::new(credentials::open(g)?);
    run_on(g, &repo, &a.options)
}

/// Prune an open repository and print the report.
pub fn run_on(g: &Global, repo: &Arc<Repository>, flags: &PruneFlags) -> Result<Code> {
    if !flags.dry_run {
        cairn_store::policy::ensure_may_remove(repo, "prune")?;
    }
    let report = prune::prune(repo, &flags.options())?;
    print(g, &report, flags.dry_run)?;
    Ok(code(&report))
}

/// Space still held by markers a running backup blocks is a partial result.
pub fn code(report: &PruneReport) -> Code {
    if report.markers_pending.is_empty() {
        Code::Ok
    } else {
        Code::Partial
    }
}

/// The report as `--json` shows it (also embedded by `forget --prune`).
pub fn report_json(r: &PruneReport, dry_run: bool) -> Value {
    json!({
        "dry_run": dry_run,
        "unused_packs": r.unused_packs,
        "unindexed_packs": r.unindexed_packs,
        "repacked_packs": r.repacked_packs,
        "blobs_rewritten": r.blobs_rewritten,
        "repack_needs_identity": r.repack_needs_identity,
        "bytes_condemned": r.bytes_condemned,
        "marker": r.marker.map(|m| m.to_hex()),
        "packs_deleted": r.packs_deleted,
        "bytes_freed": r.bytes_freed,
        "packs_rescued": r.packs_rescued,
        "incomplete_removed": r.incomplete_removed,
        "markers_swept": r.markers_swept.iter().map(|m| m.to_hex()).collect::<Vec<_>>(),
        "markers_pending": r.markers_pending.iter().map(|(m, why)| json!({"marker": m.to_hex(), "reason": why})).collect::<Vec<_>>(),
        "object_lock_days": r.object_lock.map(|l| l.days),
        "retention_extended": r.retention_extended,
    })
}

fn print(g: &Global, r: &PruneReport, dry_run: bool) -> Result<()> {
    if g.json {
        return output::json(&report_json(r, dry_run));
    }
    if !g.quiet {
        print_text(r, dry_run)?;
    }
    Ok(())
}

/// The report for people.
pub fn print_text(r: &PruneReport, dry_run: bool) -> Result<()> {
    let verb = if dry_run {
        "would condemn"
    } else {
        "condemned"
    };
    crate::outln!(
        "{verb} {}, {} left by interrupted backups, {} to repack ({} rewritten): {}",
        output::count(r.unused_packs, "unused pack"),
        output::count(r.unindexed_packs, "pack"),
        output::count(r.repacked_packs, "partly used pack"),
        output::count(r.blobs_rewritten, "live blob"),
        output::bytes(r.bytes_condemned)
    )?;
    if r.repack_needs_identity > 0 {
        crate::outln!(
            "{} partly used data packs kept as they are: repacking them needs the identity (a write key cannot read file contents)",
            r.repack_needs_identity
        )?;
    }
    if !dry_run {
        crate::outln!(
            "deleted {} ({}); {} put back because a backup used them",
            output::count(r.packs_deleted, "pack"),
            output::bytes(r.bytes_freed),
            output::count(r.packs_rescued, "condemned pack")
        )?;
        for (m, why) in &r.markers_pending {
            crate::outln!("marker {} pending: {why}", m.short())?;
        }
        if let Some(lock) = r.object_lock {
            crate::outln!(
                "Object Lock: retention of {} kept objects extended to {} days from now; deleted objects stay stored as locked versions until their retention ends (at most {} days; a lifecycle rule expiring noncurrent versions then frees the space)",
                r.retention_extended,
                lock.days,
                lock.days
            )?;
        }
    }
    Ok(())
}
