//! `cairn ls SNAP [PATH]`.

use super::Reader;
use crate::args::{Global, LsArgs};
use crate::exit::Code;
use crate::output;
use anyhow::{bail, Result};
use cairn_format::tree::{Node, NodeKind};
use cairn_store::{snapshots, trees};
use serde_json::json;

/// `ls -l` style type letter and permission string.
pub fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
    };
    let mut s = String::from(t);
    // (shift, special bit, letter when also executable, letter when not): setuid, setgid, sticky.
    for (shift, special, with_x, without_x) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (n.mode & special != 0, bits & 1 != 0) {
            (true, true) => with_x,
            (true, false) => without_x,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// JSON description of a node at `path`.
pub fn node_json(path: &str, n: &Node) -> serde_json::Value {
    json!({
        "path": path,
        "type": format!("{:?}", n.kind).to_lowercase(),
        "mode": format!("{:04o}", n.mode),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "size": n.size,
        "mtime": output::time(n.mtime_ns),
        "target": n.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
    })
}

pub fn run(g: &Global, a: LsArgs) -> Result<Code> {
    let reader = Reader::open_trees(g)?;
    let (_, snap) = snapshots::resolve(&reader.repo, &a.snapshot, &(&a.filter).into())?;
    let mut loader = reader.loader();
    let prefix = output::components(a.path.as_deref().unwrap_or("/"));
    let mut items = Vec::new();
    let mut print = |path: &[Vec<u8>], n: &Node| -> Result<()> {
        if g.json {
            items.push(node_json(&output::path(path), n));
        } else if a.long {
            crate::outln!(
                "{} {:>8} {:>8} {:>12} {} {}{}",
                mode_string(n),
                n.user.clone().unwrap_or_else(|| n.uid.to_string()),
                n.group.clone().unwrap_or_else(|| n.gid.to_string()),
                n.size,
                output::time(n.mtime_ns),
                output::quoted_path(path),
                n.target
                    .as_ref()
                    .map(|t| format!(" -> {}", output::quoted(t)))
                    .unwrap_or_default()
            )?;
        } else {
            crate::outln!("{}", output::quoted_path(path))?;
        }
        Ok(())
    };
    let start = if prefix.is_empty() {
        snap.tree
    } else {
        let Some((_, node)) = trees::find_unresolved(&mut loader, &snap.tree, &prefix)? else {
            bail!("{} is not in the snapshot", output::path(&prefix));
        };
        print(&prefix, &node)?;
        match node.subtree {
            Some(sub) if node.kind == NodeKind::Dir => sub,
            _ => {
                if g.json {
                    output::json(&items)?;
                }
                return Ok(Code::Ok);
            }
        }
    };
    trees::walk::<anyhow::Error>(
        &mut loader,
        &start,
        trees::Bounds::of(&snap),
        // Metadata only: a long file's content lists are not read.
        false,
        &mut |rel, n| {
            let full: Vec<Vec<u8>> = prefix.iter().chain(rel.iter()).cloned().collect();
            print(&full, n)?;
            Ok(true)
        },
    )?;
    if g.json {
        output::json(&items)?;
    }
    Ok(Code::Ok)
}
