//! Host backups that know the platform: presets per node role ([`presets`], extended by the
//! configuration file through [`config`]), the host inventory recorded in every host snapshot
//! ([`inventory`]), command output captured as a file ([`command`]), and the comparison of a
//! recorded inventory with a running host ([`compare`]).

pub mod command;
pub mod compare;
pub mod config;
pub mod inventory;
pub mod presets;

use cairn_format::tree::{Node, NodeKind, Tree};
use std::path::PathBuf;
use thiserror::Error;

/// What can go wrong in host backups. Every variant names the object and the cause.
#[derive(Debug, Error)]
pub enum HostError {
    /// The configuration file could not be read.
    #[error("reading configuration file {}: {cause}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The configuration file is not valid.
    #[error("configuration file {origin}: {cause}")]
    Config {
        /// The file.
        origin: String,
        /// What is wrong.
        cause: String,
    },
    /// A command could not be started.
    #[error("starting `{command}`: {cause}; is it installed and in PATH?")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        cause: std::io::Error,
    },
    /// Reading a command's output failed.
    #[error("reading the output of `{command}`: {cause}")]
    Read {
        /// The command line.
        command: String,
        /// Why.
        cause: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}){}", stderr_tail(.stderr))]
    CommandFailed {
        /// The command line.
        command: String,
        /// `exit status N` or `killed by signal N`.
        status: String,
        /// Its exit code, when it exited.
        code: Option<i32>,
        /// The end of what it wrote on stderr.
        stderr: String,
    },
    /// A host file could not be read.
    #[error("reading {}: {cause}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A host backup that cannot work as asked.
    #[error("{0}")]
    Invalid(String),
    /// A step of a host backup failed.
    #[error("{what}: {cause}")]
    Context {
        /// The step.
        what: &'static str,
        /// Why.
        cause: Box<HostError>,
    },
    /// The repository failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

fn stderr_tail(s: &str) -> String {
    if s.trim().is_empty() {
        "; it wrote nothing on stderr".into()
    } else {
        format!("; the end of its stderr:\n{}", s.trim_end())
    }
}

/// Put `nodes` into the directory `dirs` (names from the root down, created as needed with
/// mode 0755, owned by the backing-up user and stamped `time_ns`) of `root`, saving each new
/// directory's tree with `save`. A name already in the way is an error.
pub fn place(
    root: &mut Tree,
    dirs: &[&[u8]],
    nodes: Vec<Node>,
    time_ns: i64,
    save: &mut dyn FnMut(&mut Tree) -> crate::Result<cairn_format::Id>,
) -> crate::Result<()> {
    let Some((first, rest)) = dirs.split_first() else {
        for n in nodes {
            if root.get(&n.name).is_some() {
                return Err(crate::Error::Invalid(format!(
                    "{} is already in the snapshot",
                    String::from_utf8_lossy(&n.name)
                )));
            }
            root.nodes.push(n);
        }
        root.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(());
    };
    if root.get(first).is_some() {
        return Err(crate::Error::Invalid(format!(
            "{} is already in the snapshot: the inventory goes there; leave that path out of \
             the backup, or take it without the inventory (--no-inventory)",
            String::from_utf8_lossy(first)
        )));
    }
    let mut sub = Tree::default();
    place(&mut sub, rest, nodes, time_ns, save)?;
    let mut dir = Node::new(first.to_vec(), NodeKind::Dir);
    dir.mode = 0o755;
    dir.uid = rustix::process::geteuid().as_raw();
    dir.gid = rustix::process::getegid().as_raw();
    dir.mtime_ns = time_ns;
    dir.ctime_ns = time_ns;
    dir.subtree = Some(save(&mut sub)?);
    root.nodes.push(dir);
    root.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

/// A regular file node (mode 0644, the backing-up user's) holding `content`.
pub fn file_node(name: &[u8], content: Vec<cairn_format::Id>, size: u64, time_ns: i64) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::File);
    n.mode = 0o644;
    n.uid = rustix::process::geteuid().as_raw();
    n.gid = rustix::process::getegid().as_raw();
    n.mtime_ns = time_ns;
    n.ctime_ns = time_ns;
    n.size = size;
    n.content = content;
    n
}
