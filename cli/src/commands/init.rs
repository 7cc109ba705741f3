//! `cairn init`.

use crate::args::{Global, InitArgs};
use crate::exit::{usage, Code};
use crate::{credentials, output};
use anyhow::{Context, Result};
use cairn_format::chunker::ChunkerParams;
use cairn_store::{InitOptions, Repository};

pub fn run(g: &Global, a: InitArgs) -> Result<Code> {
    let loc = credentials::location(g)?;
    refuse_foreign_directory(loc)?;
    if let Some(like) = &a.like {
        return init_like(g, loc, like, a.allow_host_retention);
    }
    let mut recipients = credentials::recipients(&a.recipients, &a.recipients_files)?;
    let passphrase = g
        .passphrase_file
        .as_deref()
        .map(credentials::read_passphrase)
        .transpose()?;
    if recipients.is_empty() && passphrase.is_none() {
        if let Some(id) = &g.identity {
            // Convenience: derive the recipient from the identity file given.
            for line in std::fs::read_to_string(id)
                .with_context(|| format!("reading identity file {}", id.display()))?
                .lines()
                .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
            {
                let identity = cairn_format::envelope::parse_identity(line)?;
                recipients.push(identity.to_public().to_string());
            }
        }
    }
    let backend = credentials::backend(g)?;
    let lock = a
        .object_lock_days
        .map(|days| cairn_store::backend::WriteLock {
            mode: cairn_store::backend::LockMode::parse(&a.object_lock_mode)
                .unwrap_or(cairn_store::backend::LockMode::Compliance),
            days,
        });
    if let Some(lock) = lock {
        cairn_store::object_lock::enable_at_init(backend.as_ref(), lock)?;
    }
    let repo = Repository::init(
        backend,
        InitOptions {
            recipients: recipients.clone(),
            passphrase,
            chunker: ChunkerParams {
                min: a.chunk_size * 256,
                avg: a.chunk_size * 1024,
                max: a.chunk_size * 4096,
            },
            pack_size: a.pack_size << 20,
            ..InitOptions::default()
        },
    )?;
    if let Some(lock) = lock {
        cairn_store::object_lock::write_policy(repo.backend(), lock)?;
    }
    if a.allow_host_retention {
        cairn_store::policy::allow_at_init(repo.backend())?;
    }
    let id = repo.config().repo_id;
    if g.json {
        output::json(&serde_json::json!({
            "repository": loc,
            "id": id.to_hex(),
            "recipients": recipients,
            "own_recipient": repo.own_recipient(),
            "host_retention": a.allow_host_retention,
            "object_lock_days": a.object_lock_days,
        }))?;
    } else if !g.quiet {
        crate::outln!("created cairn repository {} at {loc}", id.short())?;
        if let Some(own) = repo.own_recipient() {
            crate::outln!(
                "its own recipient (every object is encrypted to it too; `key write-key` lists it): {own}"
            )?;
        }
        crate::outln!(
            "next: export a write key for backup hosts with `cairn key write-key -r {loc} -i IDENTITY -o FILE`"
        )?;
    }
    Ok(Code::Ok)
}

/// `init --like SOURCE`: copy the source's key objects and config.
fn init_like(g: &Global, loc: &str, like: &str, host_retention: bool) -> Result<Code> {
    let src = credentials::open_source_at(g, like)?;
    let backend = credentials::backend(g)?;
    src.init_like(backend.as_ref())?;
    if host_retention {
        cairn_store::policy::allow_at_init(backend.as_ref())?;
    }
    let id = src.config().repo_id;
    if g.json {
        output::json(&serde_json::json!({
            "repository": loc,
            "id": id.to_hex(),
            "like": like,
        }))?;
    } else if !g.quiet {
        crate::outln!(
            "created cairn repository {} at {loc}, sharing keys with {like}",
            id.short()
        )?;
        crate::outln!("next: `cairn copy --from {like} --to {loc}`")?;
    }
    Ok(Code::Ok)
}

/// What a repository directory may hold (SPEC §3), and a file system's `lost+found`.
const REPOSITORY_NAMES: [&str; 10] = [
    "config",
    "keys",
    "data",
    "tree",
    "index",
    "snapshots",
    "locks",
    "gc",
    "policy",
    "lost+found",
];

/// A local directory that holds files but no repository is someone else's (`-r /etc`, a
/// mistyped path): a repository is made in a new or empty directory (a file system's
/// `lost+found`, and what an interrupted init left, aside). A repository there is refused
/// later, by name.
fn refuse_foreign_directory(loc: &str) -> Result<()> {
    let local = loc.strip_prefix("file://").unwrap_or(loc);
    if local.contains("://") {
        return Ok(());
    }
    let dir = std::path::Path::new(local);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !REPOSITORY_NAMES.contains(&n.as_str()))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    Err(usage(
        format!(
            "{loc} is not empty ({} entries, such as {:?}) and holds no cairn repository",
            names.len(),
            names[0]
        ),
        "name a new or empty directory for the repository",
    ))
}
