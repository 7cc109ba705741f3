//! `cairn key generate|write-key`.

use crate::args::{Global, KeyCommand};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::{bail, Result};
use cairn_format::envelope::identity_to_string;
use cairn_store::keys::KeyKind;
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
                // The identity went to stdout; the recipient goes to stderr, as age-keygen does.
                eprintln!("Public key: {recipient}");
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
                        None => "cannot tell with a write key",
                    };
                    let kind = match k.kind {
                        KeyKind::Recipients => "recipients",
                        KeyKind::Passphrase => "passphrase",
                        KeyKind::Damaged => "damaged",
                    };
                    crate::outln!("{}  {kind:<10}  {:>6} B  {opens}", k.id, k.size)?;
                }
                crate::outln!("{} key objects", keys.len())?;
            }
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
            if let Some(l) = label
                .as_deref()
                .filter(|l| !cairn_format::keys::valid_label(l))
            {
                return Err(crate::exit::usage(
                    format!("--label {l:?} is not a valid write key label"),
                    "use 1 to 64 letters, digits, '.', '_' or '-' (e.g. the node name)",
                ));
            }
            let repo = credentials::open(g)?;
            if repo.role() != Role::Full {
                bail!("exporting a write key needs the repository identity or passphrase (--identity / --passphrase-file)");
            }
            credentials::write_secret_file(&path, &repo.write_key_text(label.as_deref()))?;
            if g.json {
                output::json(&serde_json::json!({
                    "write_key_file": path,
                    "label": label,
                    "repository": repo.config().repo_id.to_hex(),
                    "recipients": repo.master_recipients(),
                }))?;
            } else if !g.quiet {
                eprintln!(
                    "wrote write key for repository {} to {} (mode 0600); backups made with it are encrypted to:",
                    repo.config().repo_id.short(),
                    path.display()
                );
                for r in repo.master_recipients() {
                    eprintln!("  {r}");
                }
            }
        }
    }
    Ok(Code::Ok)
}

/// The passphrase given with --passphrase-file, if any.
fn passphrase(g: &Global) -> Result<Option<String>> {
    g.passphrase_file
        .as_deref()
        .map(credentials::read_passphrase)
        .transpose()
}
