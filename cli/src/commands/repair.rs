//! `cairn repair` (being written).

use crate::args::Global;
use crate::exit::Code;
use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from pack trailers.
    Index,
}

pub fn run(_g: &Global, _a: RepairCommand) -> Result<Code> {
    bail!("cairn repair is not built yet")
}
