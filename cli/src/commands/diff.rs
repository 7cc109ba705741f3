//! `cairn diff SNAP SNAP`: what changed, from the trees alone (no file content is read, so a
//! write key suffices). Identical subtrees are skipped by id.

use super::Reader;
use crate::args::{DiffArgs, Global};
use crate::exit::Code;
use crate::output;
use anyhow::Result;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;
use cairn_store::content_lists;
use cairn_store::loader::Loader;
use cairn_store::snapshots::{self, Filter};
use cairn_store::trees;
use serde::Serialize;
use std::cmp::Ordering;
use std::io::Write;

/// One difference.
#[derive(Debug, Serialize)]
pub struct Change {
    /// Absolute path in the snapshots.
    pub path: String,
    /// `added`, `removed`, `modified` (content), `metadata`, or `type`.
    pub change: &'static str,
    /// What changed, human-readable (`mode 0644 -> 0600`).
    pub details: Vec<String>,
}

/// Walks two snapshots' trees side by side and hands each change to `emit` as it is found,
/// so memory does not grow with the number of changes. Work and memory are bounded as every
/// walk is ([`trees::Bounds`]): by the entries the two snapshots record and by the trees held.
struct Differ<'a> {
    loader: &'a mut Loader,
    metadata: bool,
    emit: &'a mut dyn FnMut(Change) -> Result<()>,
    /// Entries visited so far, and the most allowed.
    entries: u64,
    max_entries: u64,
    /// Decoded tree bytes held along the current path.
    held: usize,
}

fn meta_details(a: &Node, b: &Node) -> Vec<String> {
    let mut d = Vec::new();
    if a.mode != b.mode {
        d.push(format!("mode {:04o} -> {:04o}", a.mode, b.mode));
    }
    if a.uid != b.uid || a.user != b.user {
        d.push(format!(
            "owner {} -> {}",
            a.user.clone().unwrap_or_else(|| a.uid.to_string()),
            b.user.clone().unwrap_or_else(|| b.uid.to_string())
        ));
    }
    if a.gid != b.gid || a.group != b.group {
        d.push(format!(
            "group {} -> {}",
            a.group.clone().unwrap_or_else(|| a.gid.to_string()),
            b.group.clone().unwrap_or_else(|| b.gid.to_string())
        ));
    }
    if a.kind != NodeKind::Dir && a.mtime_ns != b.mtime_ns {
        d.push(format!(
            "mtime {} -> {}",
            output::time(a.mtime_ns),
            output::time(b.mtime_ns)
        ));
    }
    if a.xattrs != b.xattrs {
        d.push("extended attributes".into());
    }
    if a.target != b.target {
        d.push(format!(
            "symlink target {} -> {}",
            String::from_utf8_lossy(a.target.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(b.target.as_deref().unwrap_or_default())
        ));
    }
    d
}

/// Refuse trees nested deeper than any real file system allows.
fn check_depth(path: &[Vec<u8>]) -> Result<()> {
    if path.len() >= cairn_store::trees::MAX_DEPTH {
        anyhow::bail!(
            "snapshot nests directories deeper than {} levels at {}",
            cairn_store::trees::MAX_DEPTH,
            output::path(&path[..8])
        );
    }
    Ok(())
}

impl Differ<'_> {
    fn tree(&mut self, id: Option<&Id>) -> Result<Tree> {
        Ok(match id {
            // Long files' lists are read only to compare two versions, one list at a time.
            Some(id) => self.loader.load_tree_unresolved(id)?,
            None => Tree::default(),
        })
    }

    /// Whether the files `x` and `y` (of the trees `ids`) hold the same content.
    fn same_content(&self, x: &Node, y: &Node, ids: (Option<Id>, Option<Id>)) -> Result<bool> {
        Ok(match ids {
            (Some(a), Some(b)) => content_lists::same_content(self.loader, (a, x), (b, y))?,
            // An entry in both versions is in both trees.
            _ => x.content == y.content,
        })
    }

    /// Count one entry against the bound.
    fn visit(&mut self, path: &[Vec<u8>]) -> Result<()> {
        self.entries += 1;
        if self.entries > self.max_entries {
            anyhow::bail!(
                "the snapshots hold more entries than their recorded counts allow ({}, at {}); \
                 their trees are damaged or planted",
                self.max_entries,
                output::path(path)
            );
        }
        Ok(())
    }

    /// Hold `trees` while `f` runs, within the memory bound.
    fn holding<T>(
        &mut self,
        trees: &[&Tree],
        path: &mut Vec<Vec<u8>>,
        f: impl FnOnce(&mut Self, &mut Vec<Vec<u8>>) -> Result<T>,
    ) -> Result<T> {
        let size: usize = trees.iter().map(|t| t.decoded_size()).sum();
        if self.held + size > 2 * trees::MAX_HELD {
            anyhow::bail!(
                "the directories above {} take more than {} MiB decoded; refusing trees this \
                 large (damaged or planted snapshots)",
                output::path(path),
                (2 * trees::MAX_HELD) >> 20
            );
        }
        self.held += size;
        let r = f(self, path);
        self.held -= size;
        r
    }

    /// Everything below `node` (inclusive) as added or removed.
    fn whole(&mut self, path: &mut Vec<Vec<u8>>, node: &Node, change: &'static str) -> Result<()> {
        check_depth(path)?;
        path.push(node.name.clone());
        self.visit(path)?;
        (self.emit)(Change {
            path: output::path(path),
            change,
            details: Vec::new(),
        })?;
        if node.kind == NodeKind::Dir {
            let t = self.tree(node.subtree.as_ref())?;
            self.holding(&[&t], path, |d, path| {
                t.nodes.iter().try_for_each(|n| d.whole(path, n, change))
            })?;
        }
        path.pop();
        Ok(())
    }

    fn dirs(&mut self, a: Option<&Id>, b: Option<&Id>, path: &mut Vec<Vec<u8>>) -> Result<()> {
        if a == b {
            return Ok(());
        }
        check_depth(path)?;
        let (ta, tb) = (self.tree(a)?, self.tree(b)?);
        let ids = (a.copied(), b.copied());
        self.holding(&[&ta, &tb], path, |d, path| d.merge((&ta, &tb), ids, path))
    }

    /// The entries of two versions of one directory (of the trees `ids`, where they exist), in
    /// name order.
    fn merge(
        &mut self,
        (ta, tb): (&Tree, &Tree),
        ids: (Option<Id>, Option<Id>),
        path: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let ord = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    self.whole(path, &ta.nodes[i], "removed")?;
                    i += 1;
                }
                Ordering::Greater => {
                    self.whole(path, &tb.nodes[j], "added")?;
                    j += 1;
                }
                Ordering::Equal => {
                    self.pair(&ta.nodes[i], &tb.nodes[j], ids, path)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// One entry in both versions, of the trees `ids`.
    fn pair(
        &mut self,
        x: &Node,
        y: &Node,
        ids: (Option<Id>, Option<Id>),
        path: &mut Vec<Vec<u8>>,
    ) -> Result<()> {
        path.push(x.name.clone());
        self.visit(path)?;
        let p = output::path(path);
        if x.kind != y.kind {
            (self.emit)(Change {
                path: p,
                change: "type",
                details: vec![format!("{:?} -> {:?}", x.kind, y.kind).to_lowercase()],
            })?;
        } else {
            let meta = if self.metadata {
                meta_details(x, y)
            } else {
                Vec::new()
            };
            if x.kind == NodeKind::File && (x.size != y.size || !self.same_content(x, y, ids)?) {
                let mut details = vec![format!("size {} -> {}", x.size, y.size)];
                details.extend(meta);
                (self.emit)(Change {
                    path: p,
                    change: "modified",
                    details,
                })?;
            } else if !meta.is_empty() {
                (self.emit)(Change {
                    path: p,
                    change: "metadata",
                    details: meta,
                })?;
            }
            if x.kind == NodeKind::Dir {
                self.dirs(x.subtree.as_ref(), y.subtree.as_ref(), path)?;
            }
        }
        path.pop();
        Ok(())
    }
}

pub fn run(g: &Global, a: DiffArgs) -> Result<Code> {
    let reader = Reader::open(g)?;
    let filter: Filter = (&a.filter).into();
    let pair = snapshots::resolve_pair(&reader.repo, &a.from, &a.to, &filter)?;
    let latest = [(&a.from, &pair.from), (&a.to, &pair.to)]
        .into_iter()
        .find(|(spec, _)| spec.as_str() == snapshots::LATEST)
        .map(|(_, (id, s))| (*id, s));
    if let Some((id, s)) = latest {
        if !g.quiet {
            let how = match pair.latest_in_group_of {
                Some(anchor) => format!("the newest of {}'s group", anchor.short()),
                None if filter.is_empty() => "the newest snapshot".into(),
                None => "the newest matching the selection options".into(),
            };
            eprintln!(
                "cairn: latest is {} ({how}: {}, host {}, source {}, paths {})",
                id.short(),
                output::time(s.time_ns),
                s.host,
                s.source.name(),
                s.paths.join(" ")
            );
        }
    }
    let ((ida, sa), (idb, sb)) = (&pair.from, &pair.to);
    let mut loader = reader.loader();
    let mut out = std::io::stdout().lock();
    let mut counts = [0usize; 5];
    if g.json {
        // Streamed: the same document as one JSON object, written change by change.
        let head = serde_json::json!({
            "from": ida.to_hex(),
            "to": idb.to_hex(),
            "latest": latest.map(|(id, _)| serde_json::json!({
                "id": id.to_hex(),
                "in_group_of": pair.latest_in_group_of.map(|a| a.to_hex()),
            })),
        })
        .to_string();
        write!(out, "{},\"changes\":[", head.trim_end_matches('}'))
            .map_err(output::stdout_error)?;
    }
    let json = g.json;
    let mut emit = |c: Change| -> Result<()> {
        let (sym, k) = match c.change {
            "added" => ('+', 0),
            "removed" => ('-', 1),
            "modified" => ('M', 2),
            "metadata" => ('U', 3),
            _ => ('T', 4),
        };
        if json {
            let sep = if counts.iter().sum::<usize>() == 0 {
                ""
            } else {
                ","
            };
            write!(out, "{sep}{}", serde_json::to_string(&c)?).map_err(output::stdout_error)?;
        } else if c.details.is_empty() {
            writeln!(out, "{sym} {}", c.path).map_err(output::stdout_error)?;
        } else {
            writeln!(out, "{sym} {}  ({})", c.path, c.details.join(", "))
                .map_err(output::stdout_error)?;
        }
        counts[k] += 1;
        Ok(())
    };
    let bounds = |s| trees::Bounds::of(s).max_entries;
    let mut d = Differ {
        loader: &mut loader,
        metadata: a.metadata,
        emit: &mut emit,
        entries: 0,
        max_entries: bounds(sa).saturating_add(bounds(sb)),
        held: 0,
    };
    d.dirs(Some(&sa.tree), Some(&sb.tree), &mut Vec::new())?;
    if g.json {
        writeln!(out, "]}}").map_err(output::stdout_error)?;
    } else {
        writeln!(
            out,
            "{} added, {} removed, {} modified, {} metadata only, {} type changed",
            counts[0], counts[1], counts[2], counts[3], counts[4]
        )
        .map_err(output::stdout_error)?;
    }
    Ok(Code::Ok)
}
