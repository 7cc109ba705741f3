//! `cairn diff SNAP SNAP`: what changed (`cairn_store::diff`), as text or streamed JSON.

use super::Reader;
use crate::args::{DiffArgs, Global};
use crate::exit::Code;
use crate::output;
use anyhow::Result;
use cairn_store::diff::{self, Change, ChangeKind};
use cairn_store::snapshots::{self, Filter};
use std::io::Write;

pub fn run(g: &Global, a: DiffArgs) -> Result<Code> {
    let reader = Reader::open_trees(g)?;
    let filter: Filter = (&a.filter).into();
    let pair = snapshots::resolve_pair(&reader.repo, &a.from, &a.to, &filter)?;
    let latest = [(&a.from, &pair.from), (&a.to, &pair.to)]
        .into_iter()
        .find(|(spec, _)| spec.as_str() == snapshots::LATEST)
        .map(|(_, (id, s))| (*id, s));
    if let Some((id, s)) = latest {
        if !g.quiet {
            let how = match pair.latest_in_group_of {
                Some(anchor) => format!("the newest of {}'s group", anchor.short()),
                None if filter.is_empty() => "the newest snapshot".into(),
                None => "the newest matching the selection options".into(),
            };
            output::remark(format_args!(
                "latest is {} ({how}: {}, host {}, source {}, paths {})",
                id.short(),
                output::time(s.time_ns),
                s.host,
                s.source.name(),
                s.paths.join(" ")
            ));
        }
    }
    let ((ida, sa), (idb, sb)) = (&pair.from, &pair.to);
    let mut loader = reader.loader();
    let mut out = std::io::stdout().lock();
    let mut counts = [0usize; 5];
    if g.json {
        // Streamed: the same document as one JSON object, written change by change.
        let head = serde_json::json!({
            "from": ida.to_hex(),
            "to": idb.to_hex(),
            "latest": latest.map(|(id, _)| serde_json::json!({
                "id": id.to_hex(),
                "in_group_of": pair.latest_in_group_of.map(|a| a.to_hex()),
            })),
        })
        .to_string();
        write!(out, "{},\"changes\":[", head.trim_end_matches('}'))
            .map_err(output::stdout_error)?;
    }
    let json = g.json;
    let mut emit = |c: Change| -> Result<()> {
        let (sym, k) = match c.kind {
            ChangeKind::Added => ('+', 0),
            ChangeKind::Removed => ('-', 1),
            ChangeKind::Modified => ('M', 2),
            ChangeKind::Metadata => ('U', 3),
            ChangeKind::Type => ('T', 4),
        };
        if json {
            let sep = if counts.iter().sum::<usize>() == 0 {
                ""
            } else {
                ","
            };
            write!(out, "{sep}{}", serde_json::to_string(&c)?).map_err(output::stdout_error)?;
        } else if c.details.is_empty() {
            writeln!(out, "{sym} {}", output::printable(&c.path)).map_err(output::stdout_error)?;
        } else {
            let path = output::printable(&c.path);
            writeln!(out, "{sym} {path}  ({})", c.details.join(", "))
                .map_err(output::stdout_error)?;
        }
        counts[k] += 1;
        Ok(())
    };
    diff::diff(&mut loader, (sa, sb), a.metadata, &mut emit)?;
    if g.json {
        writeln!(out, "]}}").map_err(output::stdout_error)?;
    } else {
        writeln!(
            out,
            "{} added, {} removed, {} modified, {} metadata only, {} type changed",
            counts[0], counts[1], counts[2], counts[3], counts[4]
        )
        .map_err(output::stdout_error)?;
    }
    Ok(Code::Ok)
}
