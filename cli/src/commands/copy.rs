//! `cairn copy` (being written).

use crate::args::Global;
use crate::exit::Code;
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct CopyArgs {}

pub fn run(_g: &Global, _a: CopyArgs) -> Result<Code> {
    bail!("cairn copy is not built yet")
}
