//! `cairn forget` (being written).

use crate::args::Global;
use crate::exit::Code;
use anyhow::{bail, Result};
use clap::Args;

#[derive(Args, Debug)]
pub struct ForgetArgs {}

pub fn run(_g: &Global, _a: ForgetArgs) -> Result<Code> {
    bail!("cairn forget is not built yet")
}
