//! Process exit codes (documented in the README).

use std::process::ExitCode;

/// What the process reports to its caller (systemd, cron, scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything asked for was done.
    Ok = 0,
    /// The command failed; nothing (or nothing more) was written.
    Error = 1,
    /// Usage error (bad arguments): printed by clap, or a command's [`UsageError`].
    Usage = 2,
    /// Backup completed and a snapshot was saved, but some files could not be read and are
    /// missing from it (they are listed on stderr and in `--json` output).
    Partial = 3,
    /// `check` found damage (listed on stdout and in `--json`).
    Damage = 4,
}

/// An error in what the user asked for that clap cannot see (it depends on the repository's
/// contents); `main` exits with [`Code::Usage`] for it.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<Code> for ExitCode {
    fn from(c: Code) -> Self {
        ExitCode::from(c as u8)
    }
}
