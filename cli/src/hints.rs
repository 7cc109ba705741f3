//! Hints for habits brought from neighbouring tools (etcdctl, age, ssh, restic): checks that
//! turn a puzzling failure into a usage error that says what to type instead.

use crate::exit::usage;
use anyhow::Result;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Source subcommands of `cairn backup` whose names may also be directories.
const SOURCES: [&str; 3] = ["etcd", "static-pods", "cluster"];

/// Add a tip to a clap error where the command line suggests a known habit: `cairn backup
/// etcd` meant as the directory `./etcd`, or `cairn backup -r REPO etcd …` (after an option,
/// `etcd` is read as a path).
pub fn clap_error(mut e: clap::Error, argv: &[OsString]) -> clap::Error {
    let words: Vec<&str> = argv.iter().filter_map(|a| a.to_str()).collect();
    let Some(backup) = words.iter().position(|w| *w == "backup") else {
        return e;
    };
    let tip = match e.kind() {
        ErrorKind::UnknownArgument if words.get(backup + 1).is_some_and(|w| w.starts_with('-')) => {
            let sources = backup_sources();
            words[backup + 1..]
                .iter()
                .find(|w| sources.iter().any(|s| s == *w))
                .map(|source| format!(
                    "after an option, `{source}` is read as a path to back up: name the source right after `backup` (`cairn backup {source} -r REPO …`), or put the options before `backup`"
                ))
        }
        ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict => words
            .get(backup + 1)
            .filter(|w| SOURCES.contains(w) && Path::new(w).exists())
            .map(|source| format!(
                "`{source}` is the {source} source; to back up the directory named {source} here, write ./{source}"
            )),
        _ => None,
    };
    if let Some(tip) = tip {
        e.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![tip.into()]),
        );
    }
    e
}

/// The source subcommands of `cairn backup`, as the parser knows them.
fn backup_sources() -> Vec<String> {
    let cli = <crate::args::Cli as clap::CommandFactory>::command();
    cli.find_subcommand("backup")
        .map(|b| {
            b.get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Refuse a `--key` file that is a PEM private key (etcdctl's `--key` habit) or an age
/// identity (an identity where the write key goes).
pub fn check_write_key_text(path: &Path, text: &str) -> Result<()> {
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("AGE-SECRET-KEY-1"))
    {
        return Err(usage(
            format!(
                "--key {} is an age identity, not a cairn write key",
                path.display()
            ),
            "an identity is given with --identity FILE (CAIRN_IDENTITY); a write key for hosts \
             is made from it with `cairn key write-key`",
        ));
    }
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY") {
        return Err(usage(
            format!(
                "--key {} is a PEM private key, not a cairn write key",
                path.display()
            ),
            "cairn's --key (CAIRN_KEY) is the repository write key from `cairn key write-key`; \
             etcd's client key (etcdctl --key) is `cairn backup etcd --cert-key FILE`",
        ));
    }
    Ok(())
}

/// Warn, as ssh does, when a secret file is readable by group or others.
pub fn warn_if_exposed(path: &Path, what: &str) {
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{what} {} is accessible by group or others (mode {:04o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            );
        }
    }
}

/// Refuse a recipient that age knows but cairn cannot use (ssh keys, plugins), naming it, and
/// a secret given as a recipient, without repeating it.
pub fn check_recipient(r: &str, origin: &str) -> Result<()> {
    if let Some(kind) = cairn_format::envelope::secret_kind(r) {
        return Err(usage(
            format!("{origin}: a recipient was expected, but this is {kind} (not shown)"),
            "a recipient is the public half, age1…: `cairn key generate` prints it, and an \
             identity file holds it on its `# public key:` line (`age-keygen -y FILE` prints it); \
             keep the secret out of shell history and logs",
        ));
    }
    let kind = if r.starts_with("ssh-") || r.starts_with("ecdsa-") || r.starts_with("sk-") {
        Some("an SSH public key")
    } else if r
        .strip_prefix("age1")
        .is_some_and(|rest| rest.contains('1'))
    {
        // `age1NAME1…`: X25519 recipients are bech32 data after `age1`, which never holds
        // a '1'; plugin recipients put their plugin's name before a second '1'.
        Some("an age plugin recipient")
    } else {
        None
    };
    if let Some(kind) = kind {
        let shown: String = r.chars().take(24).collect();
        return Err(usage(
            format!("{origin}: {shown}… is {kind}, which cairn does not support"),
            "use an X25519 age recipient (age1…, from `cairn key generate` or `age-keygen`)",
        ));
    }
    if let Err(e) = cairn_format::envelope::parse_recipient(r) {
        let shown: String = r.chars().take(24).collect();
        return Err(usage(
            format!("{origin}: {shown:?} is not an age recipient ({e})"),
            "an X25519 age recipient is `age1` and 58 more letters and digits: `cairn key \
             generate` prints one, `age-keygen -y FILE` prints an identity's",
        ));
    }
    Ok(())
}

/// Refuse tags the format does not accept (empty, longer than 255 bytes, control characters).
pub fn check_tags(tags: &[String]) -> Result<()> {
    match tags.iter().find(|t| !cairn_format::snapshot::valid_tag(t)) {
        Some(t) => Err(usage(
            format!("--tag {t:?} is not a valid tag"),
            "tags are 1 to 255 bytes without control characters",
        )),
        None => Ok(()),
    }
}

/// Refuse a host name that is empty or holds control characters (it is shown in listings and
/// used to group snapshots).
pub fn check_host(host: &str) -> Result<()> {
    if host.trim().is_empty() {
        return Err(usage(
            "--host is empty",
            "omit --host to record this host's name, or give the node name",
        ));
    }
    if host.chars().any(char::is_control) {
        return Err(usage(
            format!("--host {host:?} contains control characters"),
            "give a plain host name",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients() {
        assert!(check_recipient("ssh-ed25519 AAAAC3Nza", "f").is_err());
        assert!(check_recipient("age1yubikey1qwerty", "f").is_err());
        for secret in [
            "AGE-SECRET-KEY-1ZK0F6Q2DHZV7QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
            "age-secret-key-1zk0f6q2dhzv7",
            "AGE-PLUGIN-YUBIKEY-1QQQQ",
            "CAIRN-WRITE-KEY-1:Y2Fpcm5LAQBA+z/mO0+",
        ] {
            let e = check_recipient(secret, "--recipient")
                .unwrap_err()
                .to_string();
            assert!(!e.contains(&secret[16..]), "{e}");
        }
        assert!(check_recipient(
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            "f"
        )
        .is_ok());
        for garbage in ["foo", "age1qqq"] {
            let e = check_recipient(garbage, "--recipient").unwrap_err();
            let u = e
                .downcast_ref::<crate::exit::Usage>()
                .expect("a usage error");
            assert!(
                u.message.contains("is not an age recipient"),
                "{}",
                u.message
            );
        }
    }

    #[test]
    fn hosts() {
        assert!(check_host("").is_err());
        assert!(check_host("a\nb").is_err());
        assert!(check_host("master-0").is_ok());
    }
}
