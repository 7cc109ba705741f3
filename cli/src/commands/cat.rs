//! `cairn cat SNAP PATH`.

use super::Reader;
use crate::args::{CatArgs, Global};
use crate::exit::Code;
use crate::output;
use anyhow::{bail, Result};
use cairn_format::tree::NodeKind;
use cairn_store::{snapshots, trees};
use std::io::Write;

pub fn run(g: &Global, a: CatArgs) -> Result<Code> {
    let reader = Reader::open(g)?;
    let (_, snap) = snapshots::resolve(&reader.repo, &a.snapshot, &(&a.filter).into())?;
    let mut loader = reader.loader();
    let path = output::components(&a.path);
    let Some(node) = trees::find(&mut loader, &snap.tree, &path)? else {
        bail!("{} is not in the snapshot", output::path(&path));
    };
    if node.kind != NodeKind::File {
        bail!("{} is a {:?}, not a file", output::path(&path), node.kind);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut written = 0u64;
    for id in &node.content {
        let blob = loader.load(id)?;
        written += blob.len() as u64;
        out.write_all(&blob).map_err(output::stdout_error)?;
    }
    out.flush().map_err(output::stdout_error)?;
    if written != node.size {
        bail!(
            "{} has {written} bytes of content but the snapshot recorded {}: the snapshot is damaged",
            output::path(&path),
            node.size
        );
    }
    Ok(Code::Ok)
}
