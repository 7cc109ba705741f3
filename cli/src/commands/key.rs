//! `cairn key generate|list|add|passwd|remove|write-key`.

use crate::args::{Global, KeyCommand};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::{bail, Result};
use cairn_format::envelope::identity_to_string;
use cairn_store::keys::{KeyKind, NewKey};
use cairn_store::Role;

pub fn run(g: &Global, k: KeyCommand) -> Result<Code> {
    match k {
        KeyCommand::Generate { output: path } => {
            let id = age::x25519::Identity::generate();
            let recipient = id.to_public().to_string();
            let text = format!(
                "# created: {}\n# public key: {recipient}\n{}\n",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                identity_to_string(&id)
            );
            credentials::write_secret_file(&path, &text)?;
            if path.as_os_str() == "-" {
                // The identity went to stdout; the recipient goes to stderr, as age-keygen does
                // (a JSON line with --json).
                if g.json {
                    output::remark(format_args!("Public key: {recipient}"));
                } else {
                    eprintln!("Public key: {recipient}");
                }
            } else if g.json {
                output::json(&serde_json::json!({
                    "identity_file": path,
                    "recipient": recipient,
                }))?;
            } else {
                crate::outln!("{recipient}")?;
            }
        }
        KeyCommand::List => {
            let repo = credentials::open(g)?;
            let pass = passphrase(g)?;
            let keys = cairn_store::keys::list(&repo, pass.as_deref())?;
            if g.json {
                output::json(&keys)?;
            } else {
                for k in &keys {
                    let opens = match k.opens {
                        Some(true) => "opens with your credentials",
                        Some(false) => "does not open with your credentials",
                        None if repo.role() == Role::Full => "needs the passphrase to tell",
                        None => "cannot tell with a write key",
                    };
                    let kind = match k.kind {
                        KeyKind::Recipients => "recipients",
                        KeyKind::Passphrase => "passphrase",
                        KeyKind::Damaged => "damaged",
                    };
                    let created = k
                        .created_unix
                        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                        .map_or("-".to_string(), |t| {
                            t.format("%Y-%m-%d %H:%M:%S").to_string()
                        });
                    crate::outln!(
                        "{}  {kind:<10}  {:<16}  {created:<19}  {opens}",
                        k.id,
                        k.label.as_deref().unwrap_or("-"),
                    )?;
                }
                crate::outln!("{} key objects", keys.len())?;
            }
        }
        KeyCommand::Add {
            recipients,
            recipients_files,
            new_passphrase_file,
            label,
        } => {
            check_label(label.as_deref())?;
            let recipients = credentials::recipients(&recipients, &recipients_files)?;
            let new_pass = new_passphrase_file
                .as_deref()
                .map(credentials::read_passphrase)
                .transpose()?;
            let to = match &new_pass {
                Some(p) => NewKey::Passphrase(p),
                None if recipients.is_empty() => {
                    bail!("the recipients files given hold no recipient")
                }
                None => NewKey::Recipients(&recipients),
            };
            let repo = full(g)?;
            let id = cairn_store::keys::add(&repo, &to, label.as_deref())?;
            report_added(g, &id, label.as_deref(), &[])?;
        }
        KeyCommand::Passwd {
            new_passphrase_file,
            label,
        } => {
            check_label(label.as_deref())?;
            let Some(old) = passphrase(g)? else {
                return Err(crate::exit::usage(
                    "key passwd needs the current passphrase",
                    "give it with --passphrase-file CURRENT (with an identity, add a passphrase with `cairn key add --new-passphrase-file`)",
                ));
            };
            let new = credentials::read_passphrase(&new_passphrase_file)?;
            let repo = full(g)?;
            let (id, removed) =
                cairn_store::keys::change_passphrase(&repo, &old, &new, label.as_deref())?;
            report_added(g, &id, label.as_deref(), &removed)?;
        }
        KeyCommand::Remove { id, force } => {
            let repo = credentials::open_uncached(g)?;
            let pass = passphrase(g)?;
            let removed = cairn_store::keys::remove(&repo, &id, pass.as_deref(), force)?;
            if g.json {
                output::json(&serde_json::json!({ "removed": removed }))?;
            } else if !g.quiet {
                crate::outln!("removed keys/{removed}")?;
            }
        }
        KeyCommand::WriteKey {
            output: path,
            label,
        } => {
            check_label(label.as_deref())?;
            let repo = full(g)?;
            credentials::write_secret_file(&path, &repo.write_key_text(label.as_deref()))?;
            if g.json {
                output::json(&serde_json::json!({
                    "write_key_file": path,
                    "label": label,
                    "repository": repo.config().repo_id.to_hex(),
                    "recipients": repo.master_recipients(),
                    "own_recipient": repo.own_recipient(),
                }))?;
            } else if !g.quiet {
                eprintln!(
                    "wrote write key for repository {} to {} (mode 0600); backups made with it are encrypted to:",
                    repo.config().repo_id.short(),
                    path.display()
                );
                let own = repo.own_recipient();
                for r in repo.master_recipients() {
                    if own.as_deref() == Some(r.as_str()) {
                        eprintln!("  {r}  (the repository's own key, generated at init and kept in its key objects)");
                    } else {
                        eprintln!("  {r}");
                    }
                }
            }
        }
    }
    Ok(Code::Ok)
}

/// Refuse a `--label` the format does not accept (usage error).
fn check_label(label: Option<&str>) -> Result<()> {
    match label.filter(|l| !cairn_format::keys::valid_label(l)) {
        Some(l) => Err(crate::exit::usage(
            format!("--label {l:?} is not a valid key label"),
            "use 1 to 64 letters, digits, '.', '_' or '-' (e.g. the node or administrator name)",
        )),
        None => Ok(()),
    }
}

/// Open the repository (uncached: key objects change here) and require the identity or
/// passphrase.
fn full(g: &Global) -> Result<cairn_store::Repository> {
    let repo = credentials::open_uncached(g)?;
    if repo.role() != Role::Full {
        bail!("managing keys needs the repository identity or passphrase (--identity / --passphrase-file); a write key cannot");
    }
    Ok(repo)
}

/// Report a new key object (and the ones it replaced).
fn report_added(g: &Global, id: &str, label: Option<&str>, removed: &[String]) -> Result<()> {
    if g.json {
        output::json(&serde_json::json!({ "added": id, "label": label, "removed": removed }))?;
    } else if !g.quiet {
        crate::outln!("added keys/{id}")?;
        for r in removed {
            crate::outln!("removed keys/{r}")?;
        }
    }
    Ok(())
}

/// The passphrase given with --passphrase-file, if any.
fn passphrase(g: &Global) -> Result<Option<String>> {
    g.passphrase_file
        .as_deref()
        .map(credentials::read_passphrase)
        .transpose()
}
