//! `cairn check` (being written).

use crate::args::Global;
use crate::exit::Code;
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct CheckArgs {}

pub fn run(_g: &Global, _a: CheckArgs) -> Result<Code> {
    bail!("cairn check is not built yet")
}
