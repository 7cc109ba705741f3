//! `cairn prune` (being written).

use crate::args::Global;
use crate::exit::Code;
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct PruneArgs {}

pub fn run(_g: &Global, _a: PruneArgs) -> Result<Code> {
    bail!("cairn prune is not built yet")
}
