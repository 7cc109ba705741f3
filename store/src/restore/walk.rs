//! The walk over a snapshot tree that both the restore preflight ([`super::plan`]) and the
//! restore itself follow, so both see the same entries and the same `--include` decisions.

use crate::loader::Loader;
use crate::trees;
use crate::{Error, Result};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::Node;
use cairn_format::Id;
use globset::{Glob, GlobSet, GlobSetBuilder};

/// `--include` patterns, remembering which of them matched something.
pub struct Includes {
    set: GlobSet,
    patterns: Vec<String>,
    matched: Vec<bool>,
    unmatched: usize,
}

impl Includes {
    /// The patterns as globs; `None` when there are none (everything is included).
    pub fn new(patterns: &[String]) -> Result<Option<Includes>> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let invalid = |p: &str, e: globset::Error| {
            Error::Invalid(format!("invalid include pattern {p:?}: {e}"))
        };
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            b.add(Glob::new(p).map_err(|e| invalid(p, e))?);
        }
        Ok(Some(Includes {
            set: b.build().map_err(|e| invalid(&patterns.join(" "), e))?,
            patterns: patterns.to_vec(),
            matched: vec![false; patterns.len()],
            unmatched: patterns.len(),
        }))
    }

    /// Whether `path` matches a pattern; records which ones did.
    fn is_match(&mut self, path: &str) -> bool {
        let hits = self.set.matches(path);
        for &i in &hits {
            if !self.matched[i] {
                self.matched[i] = true;
                self.unmatched -= 1;
            }
        }
        !hits.is_empty()
    }

    /// The patterns that matched no path so far.
    pub fn unmatched(&self) -> Vec<&str> {
        self.patterns
            .iter()
            .zip(&self.matched)
            .filter(|(_, m)| !**m)
            .map(|(p, _)| p.as_str())
            .collect()
    }
}

/// What a walk calls for each snapshot entry, in tree order. `path` holds the entry's names
/// below the snapshot root, the entry's own last.
pub trait Visit {
    /// Entering a directory; `included` says whether it is selected itself (an excluded one is
    /// still walked, for selected entries below it).
    fn enter(&mut self, node: &Node, path: &[Vec<u8>], included: bool) -> Result<()>;
    /// Leaving that directory, after everything below it.
    fn leave(&mut self, node: Node, path: &[Vec<u8>], included: bool) -> Result<()>;
    /// A selected entry that is not a directory (the walk's own copy: its content may be
    /// taken), of the tree `tree`. Files keep their content lists unread (see
    /// `content_lists::UnreadLists`): a long file's ids are read one list at a time.
    fn entry(
        &mut self,
        loader: &mut Loader,
        node: &mut Node,
        path: &[Vec<u8>],
        tree: &Id,
    ) -> Result<()>;
}

/// Walk the snapshot's tree depth-first within the bounds its recorded counts set (see
/// [`trees::Bounds`]), selecting what `includes` matches (and everything below a matching
/// directory; all of it without patterns).
pub fn walk(
    loader: &mut Loader,
    snap: &Snapshot,
    includes: &mut Option<Includes>,
    visit: &mut impl Visit,
) -> Result<()> {
    let mut selecting = Selecting {
        all: includes.is_none(),
        includes,
        visit,
        selected: Vec::new(),
        trees: vec![snap.tree],
    };
    trees::walk_with(loader, &snap.tree, trees::Bounds::of(snap), &mut selecting)
}

/// Applies the `--include` selection between the library's walk and a [`Visit`].
struct Selecting<'a, V> {
    includes: &'a mut Option<Includes>,
    visit: &'a mut V,
    all: bool,
    /// Whether each directory on the current path is selected.
    selected: Vec<bool>,
    /// The tree of each directory on the current path, the root's first.
    trees: Vec<Id>,
}

impl<V> Selecting<'_, V> {
    fn inherited(&self) -> bool {
        self.selected.last().copied().unwrap_or(self.all)
    }
}

impl<V: Visit> trees::TreeVisitor for Selecting<'_, V> {
    type Error = Error;

    fn enter(&mut self, _: &mut Loader, path: &[Vec<u8>], node: &Node) -> Result<bool> {
        let inc = selects(self.includes, path, self.inherited());
        self.visit.enter(node, path, inc)?;
        self.selected.push(inc);
        // The walk enters only directories with a subtree.
        self.trees.push(node.subtree.unwrap_or_default());
        Ok(true)
    }

    fn leave(&mut self, _: &mut Loader, path: &[Vec<u8>], node: Node) -> Result<()> {
        let inc = self.selected.pop().unwrap_or(self.all);
        self.trees.pop();
        self.visit.leave(node, path, inc)
    }

    fn reads_lists(&self) -> bool {
        false
    }

    fn entry(&mut self, loader: &mut Loader, path: &[Vec<u8>], node: &mut Node) -> Result<()> {
        if selects(self.includes, path, self.inherited()) {
            let tree = self.trees.last().copied().unwrap_or_default();
            self.visit.entry(loader, node, path, &tree)?;
        }
        Ok(())
    }
}

/// Whether `path` is selected (`inherited`: its directory is). Patterns are still matched
/// below a selected directory while some have matched nothing, so none is reported unmatched
/// for matching only there.
fn selects(includes: &mut Option<Includes>, path: &[Vec<u8>], inherited: bool) -> bool {
    match includes {
        None => true,
        Some(i) if inherited && i.unmatched == 0 => true,
        Some(i) => i.is_match(&crate::trees::path_string(path)) || inherited,
    }
}
