//! `cairn backup …`: paths, etcd, static pod resources, a whole cluster, a host by preset, or
//! a command's output. The engine is the library's [`cairn_store::backup`]: this module turns
//! arguments into its options and prints what it saved.

mod etcd;
pub mod host;
mod paths;
mod project;
pub mod stdin;

use crate::args::{BackupArgs, BackupCommon, BackupSource, Global};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::Result;
pub use cairn_store::backup::{hostname, Saved};
use cairn_store::backup::{Origin, Session};
use cairn_store::progress::Progress;
use serde_json::json;
use std::sync::Arc;

pub fn run(g: &Global, a: BackupArgs) -> Result<Code> {
    let saved = save(g, &a)?;
    report(&saved, g)
}

/// Take the backup `a` describes and write its snapshot; print nothing on stdout (the caller
/// reports: `cairn backup` prints it, `cairn run` folds it into the run's summary).
pub fn save(g: &Global, a: &BackupArgs) -> Result<Saved> {
    match &a.source {
        None => paths::run(g, &a.common, &a.walk, &a.paths),
        Some(BackupSource::Etcd(e)) => etcd::run_etcd(g, e),
        Some(BackupSource::StaticPods(s)) => etcd::run_static_pods(g, s),
        Some(BackupSource::Cluster(c)) => etcd::run_cluster(g, c),
        Some(BackupSource::Project(p)) => project::run(g, p),
        Some(BackupSource::Host(h)) => host::run(g, h),
        Some(BackupSource::Stdin(i)) => stdin::run(g, i),
    }
}

/// Open the repository the command line names with its write credentials and start a
/// backup session recorded as `common` says, with a progress bar on a terminal.
pub fn session(g: &Global, common: &BackupCommon) -> Result<Session> {
    let (repo, origin, progress) = session_parts(g, common)?;
    Ok(Session::open(repo, origin, progress)?)
}

/// What a backup session is opened with: the repository, who the backup is recorded as made
/// by, and where progress goes.
pub fn session_parts(
    g: &Global,
    common: &BackupCommon,
) -> Result<(Arc<cairn_store::Repository>, Origin, Progress)> {
    if let Some(h) = &common.host {
        crate::hints::check_host(h)?;
    }
    crate::hints::check_tags(&common.tags)?;
    let repo = Arc::new(credentials::open(g)?);
    let origin = Origin {
        host: common.host.clone().unwrap_or_else(hostname),
        tags: common.tags.clone(),
        key_label: credentials::write_key_label(g)?,
    };
    let bar = output::progress(None, g.quiet, g.json);
    Ok((repo, origin, output::to_progress(&bar)))
}

/// The code a backup exits with: whether anything was unreadable or changing.
pub fn code(saved: &Saved) -> Code {
    if saved.complete() {
        Code::Ok
    } else {
        Code::Partial
    }
}

/// Print what was saved (text or JSON) and the warnings; the exit code.
pub fn report(saved: &Saved, g: &Global) -> Result<Code> {
    {
        let (id, snapshot, p) = (&saved.id, &saved.snapshot, saved);
        let stats = snapshot.stats;
        if g.json {
            output::json(&json!({
                "snapshot": id.to_hex(),
                "source": snapshot.source.name(),
                "made_by": cairn_store::snapshots::made_by(snapshot),
                "parent": snapshot.parent.map(|p| p.to_hex()),
                "files": stats.files,
                "dirs": stats.dirs,
                "bytes": stats.bytes,
                "files_read": stats.files_read,
                "blobs_added": stats.blobs_added,
                "added_bytes": stats.stored_added,
                "duration_ms": stats.duration_ms,
                "facts": snapshot.facts.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "unreadable": p.unreadable.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
                "changed": p.changed,
            }))?;
        } else if !g.quiet {
            crate::outln!(
                "snapshot {} saved: {}, {}, {} ({} read, {}, {} stored) in {:.1}s",
                id.short(),
                output::count(stats.files, "file"),
                output::count(stats.dirs, "dir"),
                output::bytes(stats.bytes),
                output::count(stats.files_read, "file"),
                output::count(stats.blobs_added, "new blob"),
                output::bytes(stats.stored_added),
                stats.duration_ms as f64 / 1000.0
            )?;
        }
        if !p.unreadable.is_empty() {
            let list: String = p
                .unreadable
                .iter()
                .map(|(path, e)| format!("\n  {path}: {e}"))
                .collect();
            output::warn(format_args!(
                "{} entries could not be read and are missing from snapshot {}:{list}",
                p.unreadable.len(),
                id.short()
            ));
        }
        if !p.changed.is_empty() {
            let list: String = p.changed.iter().map(|path| format!("\n  {path}")).collect();
            output::warn(format_args!(
                "{} files changed while being read (twice); snapshot {} holds them as last read, possibly inconsistent:{list}",
                p.changed.len(),
                id.short()
            ));
        }
    }
    Ok(code(saved))
}
