//! `cairn backup stdin --filename NAME [-- CMD ARGS…]`: a command's output (restic's and
//! kopia's `--stdin-from-command`) or cairn's own stdin (`--stdin --stdin-filename`), stored
//! as one file, streamed.

use super::session;
use crate::args::{BackupCommon, Global};
use crate::exit::usage;
use anyhow::{Context, Result};
use cairn_format::snapshot::{SnapshotStats, SourceKind};
use cairn_store::backup::{Produced, Saved};
use cairn_store::host::command::CommandLine;
use cairn_store::host::{file_node, place};
use clap::Args;
use std::ffi::OsString;

#[derive(Args, Debug)]
#[command(after_help = "\
A command that fails (non-zero exit status, killed) fails the backup: cairn exits 1, naming \
its exit status and the end of its stderr, and saves no snapshot. Output is chunked as it \
arrives; memory stays bounded whatever its size.

Examples:
  cairn backup stdin --filename rpm-qa.txt -- rpm -qa
  pg_dump app | cairn backup stdin --filename /dumps/app.sql")]
pub struct StdinArgs {
    /// Path of the file in the snapshot (`rpm-qa.txt`, `/dumps/app.sql`); its directories
    /// are created in the snapshot.
    #[arg(long, visible_alias = "stdin-filename", value_name = "NAME")]
    pub filename: String,
    /// The command whose standard output to store, after `--` (restic's
    /// --stdin-from-command). Without one, cairn stores what it reads on its own stdin.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
    #[command(flatten)]
    pub common: BackupCommon,
}

/// The components of a snapshot file name, refused when they could not be restored.
fn components(name: &str) -> Result<Vec<&str>> {
    let comps: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
    if comps.is_empty()
        || comps
            .iter()
            .any(|c| *c == "." || *c == ".." || !cairn_format::tree::valid_name(c.as_bytes()))
    {
        return Err(usage(
            format!("--filename {name:?} is not a usable path"),
            "name the file as it should be restored, without empty, `.` or `..` components: --filename /etcd/db-dump.sql",
        ));
    }
    if comps[0] == ".cairn" {
        return Err(usage(
            format!("--filename {name:?}: /.cairn is reserved for cairn's own records"),
            "choose another directory",
        ));
    }
    Ok(comps)
}

pub fn run(g: &Global, a: &StdinArgs) -> Result<Saved> {
    let comps = components(&a.filename)?;
    let mut s = session(g, &a.common)?;
    let policy = s.repo().cdc_policy();
    let progress = s.progress().clone();
    let (ids, size, what) = match a.command.split_first() {
        Some((program, args)) => {
            let cmd = CommandLine::new(program.clone(), args.iter().cloned());
            let (ids, size) = cmd
                .save(&mut s.saver, policy, |b| progress.inc(b.len() as u64))
                .context("nothing was saved")?;
            (ids, size, cmd.display())
        }
        None => {
            let (ids, size) = s
                .saver
                .save_reader(std::io::stdin().lock(), policy, |n| progress.inc(n))?
                .context("reading standard input; nothing was saved")?;
            (ids, size, "stdin".to_string())
        }
    };
    let (dirs, leaf) = comps.split_at(comps.len() - 1);
    let node = file_node(leaf[0].as_bytes(), ids, size, s.time_ns);
    let mut root = cairn_format::tree::Tree::default();
    let dirs: Vec<&[u8]> = dirs.iter().map(|d| d.as_bytes()).collect();
    let saver = &mut s.saver;
    place(&mut root, &dirs, vec![node], s.time_ns, &mut |t| {
        saver.save_tree(t)
    })?;
    let path = format!("/{}", comps.join("/"));
    Ok(s.finish(Produced {
        root,
        source: SourceKind::Paths,
        paths: vec![path.clone()],
        facts: vec![("stdin.file".into(), path), ("stdin.command".into(), what)],
        parent: None,
        stats: SnapshotStats {
            files: 1,
            files_read: 1,
            dirs: dirs.len() as u64,
            bytes: size,
            ..SnapshotStats::default()
        },
        unreadable: Vec::new(),
        changed: Vec::new(),
    })?)
}
