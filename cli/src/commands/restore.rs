//! `cairn restore SNAP --target DIR`.

use super::Reader;
use crate::args::{Global, Layout, RestoreArgs};
use crate::exit::Code;
use crate::output;
use anyhow::{Context, Result};
use cairn_format::Id;
use cairn_store::restore::plan::{self, Plan, Sink, Step};
use cairn_store::restore::walk::Includes;
use cairn_store::restore::{self, cluster_backup, verify, Options};
use cairn_store::{snapshots, Role};
use serde_json::json;
use std::io::Write;

pub fn run(g: &Global, a: RestoreArgs) -> Result<Code> {
    if a.layout == Layout::ClusterBackup && !a.includes.is_empty() {
        return Err(crate::exit::usage(
            "--include selects paths of the tree layout; --layout cluster-backup always writes the etcd database and the static pod archive",
            "drop --include, or restore with --layout tree",
        ));
    }
    if !a.project.namespace_map.is_empty() && !a.project.apply && a.layout != Layout::Manifests {
        return Err(crate::exit::usage(
            "--namespace-map renames the namespaces of a project snapshot: it goes with --layout manifests or --apply",
            "cairn restore SNAP --layout manifests --target DIR --namespace-map OLD=NEW",
        ));
    }
    if a.target.as_os_str().is_empty() && !a.project.apply {
        return Err(crate::exit::usage(
            "restore needs --target DIR (or --apply for a project snapshot)",
            "cairn restore SNAP --target DIR",
        ));
    }
    let (reader, (id, snap)) = Reader::open_for(g, |repo| {
        if repo.role() != Role::Full {
            return Err(cairn_store::Error::NeedsIdentity { what: "restore" }.into());
        }
        snapshots::resolve(repo, &a.snapshot, &(&a.filter).into()).map_err(Into::into)
    })?;
    if a.project.apply || a.layout == Layout::Manifests {
        return super::restore_project::run(g, &a, &reader, id, &snap);
    }
    if !g.quiet && !g.json {
        // Say which snapshot `latest` (or a prefix) named: a planted or re-dated snapshot is
        // seen here before its files are.
        eprintln!(
            "cairn: snapshot {} of {}, host {}, {}, paths {}",
            id.short(),
            output::time(snap.time_ns),
            output::quoted(snap.host.as_bytes()),
            cairn_store::snapshots::made_by(&snap),
            output::quoted_list(&snap.paths)
        );
    }
    if let Some(warning) = verify::cluster_version(&snap, a.cluster_version.as_deref()) {
        output::warn(format_args!("{warning}"));
    }
    let mut loader = reader.loader();
    let mut checks = Vec::new();
    let context = || {
        format!(
            "restoring snapshot {} into {}",
            id.short(),
            a.target.display()
        )
    };
    if a.dry_run {
        return dry_run(g, &a, &id, |sink| match a.layout {
            Layout::ClusterBackup => {
                cluster_backup::plan(&mut loader, &snap, &a.target, a.overwrite, Some(sink))
            }
            Layout::Tree | Layout::Manifests => plan::plan(
                &mut loader,
                &snap,
                &a.target,
                &mut Includes::new(&a.includes)?,
                a.overwrite,
                Some(sink),
            ),
        });
    }
    let report = match a.layout {
        Layout::ClusterBackup => {
            let written = cluster_backup::restore(&mut loader, &snap, &a.target, a.overwrite)
                .with_context(context)?;
            if let Some(db) = &written.db {
                checks.push(format!(
                    "{}: {} verified",
                    db.display(),
                    written.verified.join(", ")
                ));
            }
            json!(written)
        }
        Layout::Tree | Layout::Manifests => {
            let includes = Includes::new(&a.includes)?;
            let progress = output::progress(Some(snap.stats.bytes), g.quiet, g.json);
            let report = restore::restore(
                &mut loader,
                &snap,
                &a.target,
                Options {
                    includes,
                    overwrite: a.overwrite,
                    allow_privileged: a.allow_privileged,
                },
                output::to_progress(&progress),
            )
            .with_context(context)?;
            progress.finish_and_clear();
            for w in &report.warnings {
                output::warn(format_args!("{w}"));
            }
            if report.selinux_labels_not_set > 0 {
                output::warn(format_args!(
                    "{} SELinux labels could not be set; run restorecon -R {}",
                    report.selinux_labels_not_set,
                    a.target.display()
                ));
            }
            if let Some((db, done)) = &report.database {
                checks.push(format!("{}: {} verified", db.display(), done.join(", ")));
            }
            if !g.json && !g.quiet {
                for (p, why) in &report.skipped {
                    crate::outln!("  skipped {p}: {why}")?;
                }
            }
            json!(report)
        }
    };
    if g.json {
        output::json(&json!({
            "snapshot": id.to_hex(),
            "target": a.target,
            "report": report,
            "verified": checks,
        }))?;
    } else if !g.quiet {
        crate::outln!(
            "restored snapshot {} into {}: every blob verified against its keyed hash",
            id.short(),
            a.target.display(),
        )?;
        if let Some(o) = report.as_object() {
            let counts: Vec<String> = [
                "files",
                "dirs",
                "kept_dirs",
                "others",
                "bytes",
                "db",
                "archive",
                "stale_temporaries",
            ]
            .iter()
            .filter_map(|k| {
                o.get(*k)
                    .filter(|v| !v.is_null())
                    .map(|v| format!("{k}: {v}"))
            })
            .collect();
            crate::outln!("  {}", counts.join(", "))?;
        }
        for c in &checks {
            crate::outln!("  {c}")?;
        }
    }
    Ok(Code::Ok)
}

/// Print the plan `make` finds as it finds it (text lines, or one JSON document streamed),
/// then its totals; fails as the restore would. Writes nothing into the target.
fn dry_run(
    g: &Global,
    a: &RestoreArgs,
    id: &Id,
    make: impl FnOnce(Sink<'_>) -> cairn_store::Result<Plan>,
) -> Result<Code> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if g.json {
        write!(
            out,
            "{{\"snapshot\": {}, \"target\": {}, \"dry_run\": true, \"steps\": [",
            serde_json::to_string(&id.to_hex())?,
            serde_json::to_string(&a.target)?
        )
        .map_err(output::stdout_error)?;
    }
    let mut first = true;
    // A failure to print stops the plan; it is reported as itself (a closed stdout ends quietly).
    let mut printing: Option<std::io::Error> = None;
    let mut sink = |step: &Step| -> std::io::Result<()> {
        let printed = if g.json {
            let sep = if first { "" } else { "," };
            let step = serde_json::to_string(step).map_err(std::io::Error::other)?;
            write!(out, "{sep}\n  {step}")
        } else if !g.quiet {
            let why = step.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            let path = output::printable(step.path);
            writeln!(out, "{:<8} {path}{why}", step.action.word())
        } else {
            Ok(())
        };
        first = false;
        printed.map_err(|e| {
            let again = std::io::Error::new(e.kind(), e.to_string());
            printing = Some(e);
            again
        })
    };
    let planned = make(&mut sink);
    if let Some(e) = printing {
        return Err(output::stdout_error(e));
    }
    let plan = planned?;
    if g.json {
        writeln!(out, "\n], \"plan\": {}}}", serde_json::to_string(&plan)?)
            .map_err(output::stdout_error)?;
    } else if !g.quiet {
        writeln!(
            out,
            "dry run of restoring snapshot {} into {} (nothing written): {} new, {} kept directories, {} updated directories, {} replaced, {} skipped, {} conflicts, {} privileged",
            id.short(),
            a.target.display(),
            plan.new,
            plan.kept_dirs,
            plan.updated_dirs,
            plan.replaced,
            plan.skipped,
            plan.conflicts,
            plan.privileged
        ).map_err(output::stdout_error)?;
    }
    out.flush().map_err(output::stdout_error)?;
    plan.check(a.overwrite, a.allow_privileged)
        .context("the restore would be refused")?;
    Ok(Code::Ok)
}
