//! One module per command: each parses nothing, opens what it needs, calls the engine and
//! prints.

pub mod backup;
mod cat;
pub mod check;
pub mod copy;
mod diff;
pub mod forget;
mod generate;
pub mod host;
mod init;
pub mod jobs;
mod key;
mod ls;
pub mod object_lock;
mod policy;
pub mod presets;
pub mod prune;
pub mod repair;
mod restore;
mod restore_project;
mod snapshots;

use crate::args::{Cli, Command, SnapshotFilter};
use crate::exit::Code;
use anyhow::Result;
use cairn_format::snapshot::Snapshot;
use cairn_format::Id;
use cairn_store::index::Index;
use cairn_store::loader::Loader;
use cairn_store::snapshots::Filter;
use cairn_store::Repository;
use std::sync::Arc;

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<Code> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Key(k) => key::run(g, k),
        Command::Backup(a) => backup::run(g, *a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Cat(a) => cat::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Forget(a) => forget::run(g, *a),
        Command::Prune(a) => prune::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Repair(c) => repair::run(g, c),
        Command::Copy(a) => copy::run(g, a),
        Command::Policy(c) => policy::run(g, c),
        Command::Completions { shell } => generate::completions(shell),
        Command::Generate(c) => generate::run(g, c),
        Command::Config(c) => jobs::config_command(g, c),
        Command::Run(a) => jobs::run::run(g, a),
        Command::Jobs(a) => jobs::jobs(g, a),
        Command::Daemon(a) => jobs::daemon::run(g, a),
        Command::Presets(c) => presets::run(g, c),
        Command::Host(c) => host::run(g, c),
    }
}

impl From<&SnapshotFilter> for Filter {
    fn from(f: &SnapshotFilter) -> Self {
        Filter {
            host: f.host.clone(),
            tags: f.tags.clone(),
            source: f.source.map(|k| k.kind),
            made_by: f.source.and_then(|k| k.made_by),
            paths: f.paths.clone(),
            key_label: f.key_label.clone(),
        }
    }
}

/// An open repository with its index, ready to read trees and blobs.
pub struct Reader {
    pub repo: Arc<Repository>,
    pub index: Arc<Index>,
}

impl Reader {
    /// Open the repository named on the command line and load its index.
    pub fn open(g: &crate::args::Global) -> Result<Reader> {
        let repo = Arc::new(crate::credentials::open(g)?);
        let index = Arc::new(Index::load(&repo)?);
        Ok(Reader { repo, index })
    }

    /// Open the repository and load the index of its tree packs only, for a command that
    /// reads trees but no file content (`cairn_store::partial_index::trees_only`).
    pub fn open_trees(g: &crate::args::Global) -> Result<Reader> {
        let repo = Arc::new(crate::credentials::open(g)?);
        let index = Arc::new(cairn_store::partial_index::trees_only(&repo)?);
        Ok(Reader { repo, index })
    }

    /// Open the repository, pick one snapshot with `pick`, and load only the part of the index
    /// that restoring it needs (`cairn_store::partial_index::for_restore`).
    pub fn open_for(
        g: &crate::args::Global,
        pick: impl FnOnce(&Arc<Repository>) -> Result<(Id, Snapshot)>,
    ) -> Result<(Reader, (Id, Snapshot))> {
        let repo = Arc::new(crate::credentials::open(g)?);
        let (id, snap) = pick(&repo)?;
        let index = Arc::new(cairn_store::partial_index::for_restore(
            &repo,
            &[snap.tree],
        )?);
        Ok((Reader { repo, index }, (id, snap)))
    }

    /// A blob loader.
    pub fn loader(&self) -> Loader {
        Loader::new(self.repo.clone(), self.index.clone())
    }
}
