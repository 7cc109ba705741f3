//! `cairn restore SNAP --target DIR`.

use super::Reader;
use crate::args::{Global, Layout, RestoreArgs};
use crate::exit::Code;
use crate::output;
use crate::restore::{self, cluster_backup, verify, Options};
use anyhow::{Context, Result};
use cairn_format::snapshot::SourceKind;
use cairn_store::{snapshots, Role};
use globset::{Glob, GlobSetBuilder};
use serde_json::json;

pub fn run(g: &Global, a: RestoreArgs) -> Result<Code> {
    if a.target.as_os_str().is_empty() && !a.project.apply {
        return Err(crate::exit::usage(
            "restore needs --target DIR (or --apply for a project snapshot)",
            "cairn restore SNAP --target DIR",
        ));
    }
    let reader = Reader::open(g)?;
    if reader.repo.role() != Role::Full {
        return Err(cairn_store::Error::NeedsIdentity { what: "restore" }.into());
    }
    let (id, snap) = snapshots::resolve(&reader.repo, &a.snapshot, &(&a.filter).into())?;
    if a.project.apply || a.layout == Layout::Manifests {
        return super::restore_project::run(g, &a, &reader, id, &snap);
    }
    if let Some(warning) = verify::cluster_version(&snap, a.cluster_version.as_deref()) {
        eprintln!("cairn: warning: {warning}");
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
            .with_context(context)?;
            progress.finish_and_clear();
            for w in &report.warnings {
                eprintln!("cairn: warning: {w}");
            }
            if matches!(snap.source, SourceKind::Etcd | SourceKind::Cluster) {
                if let Some(name) = verify::fact(&snap, "etcd.file") {
                    let db = a.target.join(name);
                    if db.exists() {
                        match verify::etcd_file(&db, &snap) {
                            Ok(done) => checks.push(format!(
                                "{}: {} verified",
                                db.display(),
                                done.join(", ")
                            )),
                            Err(e) => {
                                // Never leave a database that failed its check under the name
                                // cluster-restore.sh looks for.
                                let aside = a.target.join(format!("{name}.failed-verification"));
                                std::fs::rename(&db, &aside).with_context(|| {
                                    format!("moving {} aside after: {e:#}", db.display())
                                })?;
                                return Err(e.context(format!(
                                    "the restored database failed verification and was renamed to {}",
                                    aside.display()
                                )));
                            }
                        }
                    }
                }
            }
            if !g.json && !g.quiet {
                for (p, why) in &report.skipped {
                    println!("  skipped {p}: {why}");
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
        println!(
            "restored snapshot {} into {}: every blob verified against its keyed hash",
            id.short(),
            a.target.display(),
        );
        if let Some(o) = report.as_object() {
            let counts: Vec<String> = ["files", "dirs", "others", "bytes", "db", "archive"]
                .iter()
                .filter_map(|k| {
                    o.get(*k)
                        .filter(|v| !v.is_null())
                        .map(|v| format!("{k}: {v}"))
                })
                .collect();
            println!("  {}", counts.join(", "));
        }
        for c in &checks {
            println!("  {c}");
        }
    }
    Ok(Code::Ok)
}
