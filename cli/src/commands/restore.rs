//! `cairn restore SNAP --target DIR`.

use super::Reader;
use crate::args::{Global, RestoreArgs};
use crate::exit::Code;
use crate::output;
use crate::restore::{self, Options};
use anyhow::{Context, Result};
use cairn_store::{snapshots, Role};
use globset::{Glob, GlobSetBuilder};
use serde_json::json;

pub fn run(g: &Global, a: RestoreArgs) -> Result<Code> {
    let reader = Reader::open(g)?;
    if reader.repo.role() != Role::Full {
        return Err(cairn_store::Error::NeedsIdentity { what: "restore" }.into());
    }
    let (id, snap) = snapshots::resolve(&reader.repo, &a.snapshot, &(&a.filter).into())?;
    let includes = if a.includes.is_empty() {
        None
    } else {
        let mut b = GlobSetBuilder::new();
        for p in &a.includes {
            b.add(Glob::new(p).with_context(|| format!("invalid include pattern {p:?}"))?);
        }
        Some(b.build()?)
    };
    let progress = output::progress(Some(snap.stats.bytes), g.quiet, g.json);
    let mut loader = reader.loader();
    let report = restore::restore(
        &mut loader,
        &snap.tree,
        &a.target,
        Options {
            includes,
            overwrite: a.overwrite,
        },
        progress.clone(),
    )
    .with_context(|| {
        format!(
            "restoring snapshot {} into {}",
            id.short(),
            a.target.display()
        )
    })?;
    progress.finish_and_clear();
    for w in &report.warnings {
        eprintln!("cairn: warning: {w}");
    }
    if g.json {
        output::json(&json!({
            "snapshot": id.to_hex(),
            "target": a.target,
            "report": report,
        }))?;
    } else if !g.quiet {
        println!(
            "restored snapshot {} into {}: {} files, {} dirs, {} others, {} verified",
            id.short(),
            a.target.display(),
            report.files,
            report.dirs,
            report.others,
            output::bytes(report.bytes)
        );
        for (p, why) in &report.skipped {
            println!("  skipped {p}: {why}");
        }
    }
    Ok(Code::Ok)
}
