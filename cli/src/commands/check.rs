//! `cairn check`: audit a repository.

use crate::args::Global;
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::Result;
use cairn_store::check::{self, CheckReport, Subset};
use clap::Args;
use serde_json::json;
use std::sync::Arc;

/// Arguments of `cairn check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Verify only that every object's content matches its name (blake3 of the stored bytes)
    /// and that config decodes. Needs no key at all: for auditors. Reads every object.
    #[arg(long, conflicts_with_all = ["read_data", "read_data_subset"])]
    pub no_key: bool,
    /// Also read every pack: names, decryption, trailers and every blob's keyed hash. Data
    /// packs need the identity; with a write key they are checked against their names only.
    #[arg(long)]
    pub read_data: bool,
    /// Like --read-data, for a subset of packs: `10%` (random) or `2/5` (the second of five
    /// fixed groups; run 1/5 … 5/5 on successive days to cover everything).
    #[arg(long, value_name = "SUBSET", value_parser = subset, conflicts_with = "read_data")]
    pub read_data_subset: Option<Subset>,
}

fn subset(s: &str) -> Result<Subset, String> {
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p
            .parse()
            .map_err(|_| format!("{s:?} is not a percentage"))?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(format!("{s} is not more than 0% and at most 100%"));
        }
        return Ok(Subset::Fraction(v / 100.0));
    }
    let (n, m) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected a percentage (10%) or a group (2/5)"))?;
    let (n, m): (u64, u64) = (
        n.parse().map_err(|_| format!("{n:?} is not a number"))?,
        m.parse().map_err(|_| format!("{m:?} is not a number"))?,
    );
    if m == 0 || n == 0 || n > m {
        return Err(format!("{s}: the group must be between 1/{m} and {m}/{m}"));
    }
    Ok(Subset::Part(n, m))
}

pub fn run(g: &Global, a: CheckArgs) -> Result<Code> {
    Ok(audit(g, &a)?.0)
}

/// Check as `a` asks, printing as `cairn check` does; the code and the report.
pub fn audit(g: &Global, a: &CheckArgs) -> Result<(Code, CheckReport)> {
    let (code, report) = audit_silent(g, a)?;
    print(g, &report)?;
    Ok((code, report))
}

/// Whether opening the repository failed on a damaged object: its config, or, when no key
/// object opened, one whose bytes do not match its name (the credentials' own, maybe).
fn damaged_at_open(e: &anyhow::Error) -> bool {
    use cairn_store::Error;
    e.chain().any(|c| match c.downcast_ref::<Error>() {
        Some(Error::Damaged { .. } | Error::NameMismatch { .. }) => true,
        Some(Error::WrongIdentity { damaged, .. } | Error::WrongPassphrase { damaged, .. }) => {
            !damaged.is_empty()
        }
        _ => false,
    })
}

/// Check as `a` asks without printing the report.
pub fn audit_silent(g: &Global, a: &CheckArgs) -> Result<(Code, CheckReport)> {
    let mut report = CheckReport::default();
    let repo = match a.no_key {
        true => None,
        false => match credentials::open_uncached(g) {
            Ok(repo) => Some(repo),
            // A damaged config or key object is damage to report, with whatever else the
            // names show, not a reason to stop.
            Err(e) if damaged_at_open(&e) => {
                report.notes.push(format!(
                    "the repository cannot be opened ({e:#}): only the objects' names were checked"
                ));
                None
            }
            Err(e) => return Err(e),
        },
    };
    if let Some(repo) = repo {
        let repo = Arc::new(repo);
        let subset = match (a.read_data, a.read_data_subset) {
            (true, _) => Some(Subset::All),
            (false, s) => s,
        };
        let mut audit = check::check_structure(&repo, &mut report, subset.is_some())?;
        if g.as_of.is_none() {
            crate::commands::object_lock::audit(repo.backend(), &mut report.notes)?;
        }
        let bar = subset.map(|_| {
            let bar = output::progress(None, g.quiet, g.json);
            bar.set_message("reading packs");
            bar
        });
        check::check_data_and_attribute(&mut audit, subset, &mut report)?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    } else {
        report.names_only = true;
        let backend = credentials::backend(g)?;
        check::check_names(backend.as_ref(), &mut report)?;
        if !a.no_key && report.problems.is_empty() {
            // Opening failed on a damaged object whose name still matches its bytes (written
            // so): the opening's error is the damage.
            report.problems.push(check::Problem::new(
                "config or keys",
                report.notes.last().cloned().unwrap_or_default(),
                "restore it from a copy of the repository (an `init --like` target holds the same config and key objects)",
            ));
        }
    }
    let code = if !report.problems.is_empty() {
        Code::Damage
    } else if !report.unchecked.is_empty() {
        Code::Partial
    } else {
        Code::Ok
    };
    Ok((code, report))
}

fn print(g: &Global, r: &CheckReport) -> Result<()> {
    if g.json {
        return output::json(&json!({
            "clean": r.problems.is_empty(),
            "objects_named": r.objects_named,
            "snapshots": r.snapshots,
            "packs": r.packs,
            "blobs": r.blobs,
            "packs_read": r.packs_read,
            "bytes_read": r.bytes_read,
            "blobs_verified": r.blobs_verified,
            "notes": r.notes,
            "problems": r.problems.iter().map(|p| json!({
                "object": p.object,
                "cause": p.cause,
                "hint": p.hint,
                "snapshots": p.snapshots.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
                "files": p.files,
                "files_affected": p.files_affected,
            })).collect::<Vec<_>>(),
            "unchecked": r.unchecked.iter().map(|p| json!({
                "object": p.object,
                "cause": p.cause,
                "hint": p.hint,
            })).collect::<Vec<_>>(),
        }));
    }
    if r.names_only {
        crate::outln!(
            "names: {}, {} read, each matches the blake3 of its bytes unless listed below",
            output::count(r.objects_named, "object"),
            output::bytes(r.bytes_read)
        )?;
    } else {
        crate::outln!(
            "structure: {}, {}, {}",
            output::count(r.snapshots, "snapshot"),
            output::count(r.packs, "pack"),
            output::count(r.blobs, "blob")
        )?;
        if r.packs_read > 0 {
            crate::outln!(
                "data: {} ({}) read, {} verified against their keyed hashes",
                output::count(r.packs_read, "pack"),
                output::bytes(r.bytes_read),
                output::count(r.blobs_verified, "blob")
            )?;
        }
    }
    for n in &r.notes {
        crate::outln!("note: {n}")?;
    }
    for p in &r.problems {
        crate::outln!("DAMAGED {}: {}; {}", p.object, p.cause, p.hint)?;
        if !p.snapshots.is_empty() {
            let ids: Vec<String> = p.snapshots.iter().map(|s| s.short()).collect();
            crate::outln!(
                "  affects snapshots {} ({})",
                ids.join(" "),
                output::count(p.files_affected, "file")
            )?;
        }
        for f in &p.files {
            crate::outln!("  {f}")?;
        }
        if p.files_affected > p.files.len() as u64 {
            crate::outln!("  … and {} more", p.files_affected - p.files.len() as u64)?;
        }
    }
    for p in &r.unchecked {
        crate::outln!("NOT CHECKED {}: {}; {}", p.object, p.cause, p.hint)?;
    }
    if r.problems.is_empty() {
        crate::outln!("no damage found")?;
    } else {
        let damaged = output::count(r.problems.len() as u64, "damaged object");
        crate::outln!("{damaged}")?;
    }
    Ok(())
}
