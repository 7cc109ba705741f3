//! `cairn cat SNAP PATH`.

use super::Reader;
use crate::args::{CatArgs, Global};
use crate::exit::Code;
use crate::output;
use anyhow::{bail, Result};
use cairn_format::tree::NodeKind;
use cairn_format::Id;
use cairn_store::content_lists::UnreadLists;
use cairn_store::{snapshots, trees};
use std::io::Write;

pub fn run(g: &Global, a: CatArgs) -> Result<Code> {
    let (reader, (_, snap)) = Reader::open_for(g, |repo| {
        Ok(snapshots::resolve(repo, &a.snapshot, &(&a.filter).into())?)
    })?;
    let mut loader = reader.loader();
    let path = output::components(&a.path);
    let Some((tree_id, mut node)) = trees::find_unresolved(&mut loader, &snap.tree, &path)? else {
        bail!("{} is not in the snapshot", output::path(&path));
    };
    if node.kind != NodeKind::File {
        bail!(
            "{} is a {}, not a file: `cairn ls SNAP PATH` lists a directory",
            output::path(&path),
            node.kind.name()
        );
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut written = 0u64;
    // A failure to write stdout, kept apart from the repository's errors.
    let mut failed = None;
    let mut write = |ids: &[Id]| -> cairn_store::Result<()> {
        for id in ids {
            let blob = loader.load(id)?;
            written += blob.len() as u64;
            if let Err(e) = out.write_all(&blob) {
                failed = Some(output::stdout_error(e));
                return Err(cairn_store::Error::Invalid("stdout closed".into()));
            }
        }
        Ok(())
    };
    // A long file's ids a content list at a time.
    let r = match UnreadLists::take(&reader.loader(), tree_id, &mut node) {
        Some(mut lists) => lists.each(|ids| write(&ids)),
        None => write(&node.content),
    };
    if let Some(e) = failed {
        return Err(e);
    }
    r?;
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
