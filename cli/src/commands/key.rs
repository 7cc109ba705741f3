//! `cairn key generate|write-key`.

use crate::args::{Global, KeyCommand};
use crate::exit::Code;
use crate::{credentials, output};
use anyhow::{bail, Result};
use cairn_format::envelope::identity_to_string;
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
