//! `cairn restore SNAP --layout manifests | --apply` for project snapshots; the engine is
//! `cairn_store::project::restore`.

use super::Reader;
use crate::args::{Global, RestoreArgs};
use crate::exit::{usage, Code};
use crate::{outln, output};
use anyhow::{bail, Context, Result};
use cairn_format::snapshot::{Snapshot, SourceKind};
use cairn_format::Id;
use cairn_store::project::restore::{self, NamespaceMap, Outcome};
use cairn_store::project::Kube;
use serde_json::json;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

pub fn run(g: &Global, a: &RestoreArgs, reader: &Reader, id: Id, snap: &Snapshot) -> Result<Code> {
    if snap.source != SourceKind::Project {
        bail!(
            "snapshot {} is a {} snapshot; --layout manifests and --apply restore project snapshots (`cairn backup project`)",
            id.short(),
            snap.source.name()
        );
    }
    let map_hint = "give --namespace-map OLD=NEW with namespaces of the snapshot (`cairn ls SNAP /` lists them)";
    let map = NamespaceMap::parse(&a.project.namespace_map)
        .map_err(|e| usage(e.to_string(), map_hint))?;
    if !a.project.apply {
        if a.target.as_os_str().is_empty() {
            return Err(usage(
                "--layout manifests needs --target DIR",
                "cairn restore SNAP --layout manifests --target DIR",
            ));
        }
        if a.dry_run || !a.includes.is_empty() {
            return Err(usage(
                "--layout manifests writes every object of the snapshot: it takes neither --dry-run nor --include",
                "restore into an empty directory and look there, or use --apply --dry-run to have the cluster validate the objects",
            ));
        }
    } else if !a.target.as_os_str().is_empty() {
        return Err(usage(
            "--apply writes to the cluster, not to --target",
            "leave out --target, or use --layout manifests --target DIR to write files",
        ));
    }
    let mut loader = reader.loader();
    let docs = restore::documents(&mut loader, &snap.tree)?;
    map.check(&docs)
        .map_err(|e| usage(e.to_string(), map_hint))?;
    if !a.project.apply {
        let written = restore::write_manifests(&mut loader, &docs, &a.target, &map, a.overwrite)
            .with_context(|| {
                format!(
                    "restoring snapshot {} into {}",
                    id.short(),
                    a.target.display()
                )
            })?;
        if g.json {
            output::json(&json!({"snapshot": id.to_hex(), "target": a.target, "report": written}))?;
        } else if !g.quiet {
            outln!(
                "restored snapshot {} into {}: {} ({}), every blob verified; apply with `kubectl apply --server-side -k {}`",
                id.short(),
                a.target.display(),
                output::count(written.files, "object"),
                output::bytes(written.bytes),
                a.target.display()
            )?;
        }
        return Ok(Code::Ok);
    }
    let kube = Kube::connect(&a.project.kube.connection())?;
    let (quiet, json) = (g.quiet, g.json);
    // A closed stdout stops the apply where it is (exit 141, as for every command).
    let mut closed = None;
    let applied = restore::apply(&kube, &mut loader, &docs, &map, a.dry_run, |x| {
        if json || (quiet && !matches!(x.outcome, Outcome::Failed(_))) {
            return ControlFlow::Continue(());
        }
        let printed = match &x.outcome {
            Outcome::Failed(why) => {
                eprintln!(
                    "  failed     {}: {}",
                    output::printable(&x.object),
                    output::printable(why)
                );
                Ok(())
            }
            o => outln!("  {:<10} {}", format!("{o:?}").to_lowercase(), x.object),
        };
        match printed {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                closed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = closed {
        return Err(e);
    }
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for x in &applied {
        let k = match x.outcome {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed(_) => "failed",
        };
        *counts.entry(k).or_default() += 1;
    }
    let failed = counts.get("failed").copied().unwrap_or(0);
    if json {
        output::json(&json!({
            "snapshot": id.to_hex(),
            "server": kube.server(),
            "dry_run": a.dry_run,
            "counts": counts,
            "objects": applied,
        }))?;
    } else if !quiet {
        outln!(
            "applied snapshot {} to {}{}: {}",
            id.short(),
            kube.server(),
            if a.dry_run { " (dry run)" } else { "" },
            counts
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if failed > 0 {
        output::remark(format_args!(
            "{} could not be applied (listed above with the server's answer)",
            output::count(failed, "object")
        ));
        return Ok(Code::Partial);
    }
    Ok(Code::Ok)
}
