//! `cairn copy`: ship snapshots to another repository (offsite) as ciphertext.

use crate::args::{Global, SnapshotFilter};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::{Context, Result};
use cairn_store::copy;
use cairn_store::snapshots::{self, Filter};
use clap::Args;
use std::sync::Arc;

/// Arguments of `cairn copy`.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Snapshots to copy (ids, prefixes or `latest`); default: every snapshot the destination
    /// lacks, narrowed by the selection options.
    pub snapshots: Vec<String>,
    /// Source repository (default: --repo / CAIRN_REPO).
    #[arg(long, value_name = "REPO")]
    pub from: Option<String>,
    /// Destination repository, created with `cairn init --like SOURCE`.
    #[arg(long, value_name = "REPO")]
    pub to: String,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

pub fn run(g: &Global, a: CopyArgs) -> Result<Code> {
    let from = match &a.from {
        Some(f) => f.as_str(),
        None => credentials::location(g)
            .context("no source repository: pass --from REPO, or --repo / CAIRN_REPO")?,
    };
    Ok(transfer(g, from, g, &a)?.0)
}

/// Copy from `from` (opened with `g`) to `a.to` (opened with `g_to`: its own key and object
/// store options), printing as `cairn copy` does.
pub fn transfer(
    g: &Global,
    from: &str,
    g_to: &Global,
    a: &CopyArgs,
) -> Result<(Code, copy::CopyReport)> {
    let src = Arc::new(credentials::open_source_at(g, from)?);
    let dst = Arc::new(credentials::open_at(g_to, &a.to)?);
    transfer_open(g, from, &src, &dst, a)
}

/// [`transfer`] between repositories already open.
pub fn transfer_open(
    g: &Global,
    from: &str,
    src: &Arc<cairn_store::Repository>,
    dst: &Arc<cairn_store::Repository>,
    a: &CopyArgs,
) -> Result<(Code, copy::CopyReport)> {
    let filter = Filter::from(&a.filter);
    let mut unreadable = Vec::new();
    let selected = if a.snapshots.is_empty() {
        let listing = snapshots::list(src)?;
        unreadable = listing
            .unreadable
            .into_iter()
            .map(|u| (u.path, u.why))
            .collect();
        listing
            .snapshots
            .into_iter()
            .filter(|(_, s)| filter.matches(s))
            .collect::<Vec<_>>()
    } else {
        a.snapshots
            .iter()
            .map(|spec| snapshots::resolve(src, spec, &filter))
            .collect::<Result<Vec<_>, _>>()?
    };
    let bar = output::progress(None, g.quiet, g.json);
    bar.set_message("packs sent");
    let report = copy::copy(src, dst, &selected, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    if g.json {
        output::json(&serde_json::json!({
            "from": from,
            "to": a.to,
            "snapshots_copied": report.snapshots_copied.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "snapshots_present": report.snapshots_present.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
            "packs_copied": report.packs_copied,
            "packs_adopted": report.packs_adopted,
            "bytes_copied": report.bytes_copied,
            "blobs_present": report.blobs_present,
            "snapshots_unreadable": unreadable.iter().map(|(p, e)| serde_json::json!({"object": p, "error": e})).collect::<Vec<_>>(),
            "snapshots_failed": report.snapshots_failed.iter().map(|(id, e)| serde_json::json!({"snapshot": id.to_hex(), "error": e})).collect::<Vec<_>>(),
        }))?;
    } else if !g.quiet {
        for id in &report.snapshots_copied {
            crate::outln!("copied snapshot {}", id.short())?;
        }
        crate::outln!(
            "{} copied, {} already at {}; {} sent ({}), {} from an interrupted copy reused",
            output::count(report.snapshots_copied.len() as u64, "snapshot"),
            report.snapshots_present.len(),
            a.to,
            output::count(report.packs_copied, "pack"),
            output::bytes(report.bytes_copied),
            output::count(report.packs_adopted, "pack"),
        )?;
    }
    if unreadable.is_empty() && report.snapshots_failed.is_empty() {
        return Ok((Code::Ok, report));
    }
    for (id, e) in &report.snapshots_failed {
        output::warn(format_args!("snapshot {} was not copied: {e}", id.short()));
    }
    for (path, e) in &unreadable {
        output::warn(format_args!(
            "snapshot object {path} at {from} was not copied: {e}"
        ));
    }
    output::note(format_args!(
        "run `cairn check` on {from} to see what is damaged"
    ));
    // Some damage left out, and nothing copied: that is a failed copy, not a partial one.
    let code = if report.snapshots_copied.is_empty() && !report.snapshots_failed.is_empty() {
        Code::Error
    } else {
        Code::Partial
    };
    Ok((code, report))
}
