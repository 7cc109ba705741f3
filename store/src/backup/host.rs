//! A host's configuration into a backup session: the paths of its presets (absent ones
//! recorded, not an error), paths named explicitly (which must exist), read below a root
//! directory (a mounted image) but recorded as host paths, and the host inventory in
//! `/.cairn/inventory`.

use super::paths::{absolute_paths, walk_recording};
use super::{Produced, Saved, Session};
use crate::host::presets::{resolve_in_root, under_root, Preset, GLOB_CHARS};
use crate::host::{inventory, place, HostError};
use crate::source::fs::Options;
use crate::{snapshots, trees};
use cairn_format::snapshot::SourceKind;
use cairn_format::tree::Node;
use cairn_format::Id;
use std::path::{Component, Path, PathBuf};

/// What a host backup takes, decided before the repository is opened.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The host's root directory (canonical).
    pub root: PathBuf,
    /// The presets chosen.
    pub presets: Vec<Preset>,
    /// Whether `auto` chose them.
    pub auto: bool,
    /// Host paths that exist below the root, sorted.
    pub present: Vec<String>,
    /// Preset paths that do not, sorted.
    pub absent: Vec<String>,
    /// Whether the inventory is recorded.
    pub inventory: bool,
}

/// The host's root directory as given (`/`, or a mounted image), made canonical.
pub fn host_root(root: &Path) -> Result<PathBuf, HostError> {
    let canonical = std::fs::canonicalize(root).map_err(|cause| {
        HostError::Invalid(format!(
            "host root (--root) {}: {cause}; name the directory the host's system is mounted at",
            root.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(HostError::Invalid(format!(
            "host root {} is not a directory",
            canonical.display()
        )));
    }
    Ok(canonical)
}

impl Selection {
    /// The paths `presets` and `explicit` name below `root` (canonical, see [`host_root`]).
    /// Explicit paths must exist; preset paths that do not are recorded as absent.
    pub fn new(
        root: PathBuf,
        presets: Vec<Preset>,
        auto: bool,
        explicit: &[PathBuf],
        inventory: bool,
    ) -> Result<Selection, HostError> {
        let mut present = explicit_paths(&root, explicit)?;
        let mut absent = Vec::new();
        for p in &presets {
            for pattern in &p.paths {
                let found = expand(&root, pattern)?;
                if found.is_empty() {
                    absent.push(pattern.clone());
                }
                present.extend(found);
            }
        }
        present.sort();
        present.dedup();
        absent.sort();
        absent.dedup();
        if present.is_empty() && !presets.is_empty() {
            let names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
            return Err(HostError::Invalid(format!(
                "none of the paths of preset {} exists below {} (is the system image mounted \
                 there? `cairn presets show NAME` lists them); nothing was saved",
                names.join(", "),
                root.display()
            )));
        }
        if present.is_empty() && !inventory {
            return Err(HostError::Invalid(format!(
                "none of the preset paths exists below {} and the inventory is off; nothing to \
                 back up, nothing was saved",
                root.display()
            )));
        }
        Ok(Selection {
            root,
            presets,
            auto,
            present,
            absent,
            inventory,
        })
    }
}

/// The host paths a preset path names below `root`: itself, or what its glob (last
/// component) matches. Empty when absent.
fn expand(root: &Path, pattern: &str) -> Result<Vec<String>, HostError> {
    let p = Path::new(pattern);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(GLOB_CHARS) {
        let real = resolve_in_root(root, pattern);
        let exists = std::fs::symlink_metadata(under_root(root, &real)).is_ok();
        return Ok(if exists { vec![real] } else { Vec::new() });
    }
    // The glob's directory, its links resolved (the glob itself is the last component).
    let resolved = PathBuf::from(resolve_in_root(root, pattern));
    let parent = resolved.parent().unwrap_or(Path::new("/"));
    let glob = globset::Glob::new(&name)
        .map_err(|e| {
            HostError::Invalid(format!("preset path {pattern:?} is not a valid glob: {e}"))
        })?
        .compile_matcher();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(under_root(root, &parent.to_string_lossy())) {
        for e in entries.flatten() {
            if glob.is_match(e.file_name()) {
                out.push(parent.join(e.file_name()).display().to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Explicitly named paths as host paths: resolved like `cairn backup PATH` when the root is
/// /, else absolute and taken lexically. Each must exist.
fn explicit_paths(root: &Path, paths: &[PathBuf]) -> Result<Vec<String>, HostError> {
    let slash = root == Path::new("/");
    let out = if slash {
        absolute_paths(paths)?
    } else {
        paths
            .iter()
            .map(|p| {
                if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
                    return Err(HostError::Invalid(format!(
                        "{}: with --root, name host paths absolutely (without ..)",
                        p.display()
                    )));
                }
                Ok(resolve_in_root(root, &p.to_string_lossy()))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    for p in &out {
        if std::fs::symlink_metadata(under_root(root, p)).is_err() {
            let below = if slash {
                String::new()
            } else {
                format!(" below {}", root.display())
            };
            return Err(HostError::Invalid(format!(
                "{p} does not exist{below}; a path named on the command line must exist (only \
                 preset paths may be absent); nothing was saved"
            )));
        }
    }
    Ok(out)
}

/// Give each inventory file that the previous snapshot (`parent`) recorded with the same
/// content its time there, so that `diff` shows only what changed on the host. If the previous
/// inventory cannot be read, the files keep this backup's time.
fn keep_unchanged_times(s: &Session, parent: &Id, nodes: &mut [Node]) {
    let previous = || -> crate::Result<Vec<Node>> {
        let mut loader = s.loader();
        let snap = snapshots::load(s.repo(), parent)?;
        let dir = trees::find(
            &mut loader,
            &snap.tree,
            &inventory::DIR_COMPONENTS.map(Vec::from),
        )?;
        match dir.and_then(|d| d.subtree) {
            Some(t) => Ok(loader.load_tree(&t)?.nodes),
            None => Ok(Vec::new()),
        }
    };
    let previous = match previous() {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("previous inventory of {parent} not read: {e}");
            return;
        }
    };
    for n in nodes {
        if let Some(p) = previous
            .iter()
            .find(|p| p.name == n.name && p.size == n.size && p.content == n.content)
        {
            (n.mtime_ns, n.ctime_ns) = (p.mtime_ns, p.ctime_ns);
        }
    }
}

/// Back up what `sel` selected into `s` (walked with `opts`, whose root is set to the
/// selection's) and write the snapshot. `note` hears what the inventory could not record.
pub fn host(
    mut s: Session,
    sel: &Selection,
    mut opts: Options,
    note: &mut dyn FnMut(&str),
) -> Result<Saved, HostError> {
    let mut recorded = sel.present.clone();
    if sel.inventory {
        recorded.push(inventory::DIR.into());
        recorded.sort();
    }
    let walked: Vec<PathBuf> = sel.present.iter().map(PathBuf::from).collect();
    opts.root = sel.root.clone();
    let mut produced = if walked.is_empty() {
        Produced::empty(SourceKind::Paths, recorded.clone())
    } else {
        walk_recording(&mut s, SourceKind::Paths, recorded, &walked, opts)?
    };
    let names: Vec<&str> = sel.presets.iter().map(|p| p.name.as_str()).collect();
    if !names.is_empty() {
        produced
            .facts
            .push(("host.presets".into(), names.join(",")));
        produced.facts.push((
            "host.preset_selection".into(),
            if sel.auto { "auto" } else { "named" }.into(),
        ));
    }
    if sel.root != Path::new("/") {
        produced
            .facts
            .push(("host.root".into(), sel.root.display().to_string()));
    }
    produced
        .facts
        .push(("host.absent".into(), sel.absent.join("\n")));
    if sel.inventory {
        let policy = s.repo().cdc_policy();
        let mut saved =
            inventory::save(&mut s.saver, &sel.root, s.time_ns, policy).map_err(|e| {
                HostError::Context {
                    what: "taking the host inventory; nothing was saved",
                    cause: Box::new(e),
                }
            })?;
        for n in &saved.notes {
            note(n);
        }
        if let Some(parent) = produced.parent {
            keep_unchanged_times(&s, &parent, &mut saved.nodes);
        }
        produced.stats.files += saved.nodes.len() as u64;
        produced.stats.files_read += saved.nodes.len() as u64;
        produced.stats.dirs += 2;
        produced.stats.bytes += saved.nodes.iter().map(|n| n.size).sum::<u64>();
        let saver = &mut s.saver;
        place(
            &mut produced.root,
            &inventory::DIR_COMPONENTS,
            saved.nodes,
            s.time_ns,
            &mut |t| saver.save_tree(t),
        )
        .map_err(|e| HostError::Context {
            what: "placing the inventory in the snapshot",
            cause: Box::new(e.into()),
        })?;
        produced.facts.extend(saved.facts);
    }
    Ok(s.finish(produced)?)
}
