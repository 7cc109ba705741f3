//! `cairn completions SHELL` and `cairn generate man DIR`: shell completions and man pages
//! from the clap definitions, so they never disagree with `--help`.

use crate::args::{Cli, GenerateCommand};
use crate::exit::Code;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<Code> {
    use std::io::Write;
    // Generated into memory: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(crate::output::stdout_error)?;
    Ok(Code::Ok)
}

pub fn run(g: &crate::args::Global, c: GenerateCommand) -> Result<Code> {
    match c {
        GenerateCommand::Man { dir } => man_pages(&dir),
        GenerateCommand::Systemd(a) => super::jobs::systemd::run(g, a),
        GenerateCommand::Cronjob(a) => super::jobs::cronjob::run(g, a),
    }
}

/// One page per command and subcommand: `cairn.1`, `cairn-backup.1`, `cairn-backup-etcd.1`, …
fn man_pages(dir: &Path) -> Result<Code> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(Code::Ok)
}
