//! Process exit codes (documented in the README).

use std::process::ExitCode;

/// What the process reports to its caller (systemd, cron, scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything asked for was done.
    Ok = 0,
    /// The command failed; nothing (or nothing more) was written.
    Error = 1,
    /// Usage error (bad arguments, an unusable repository location or object store
    /// setting); nothing was read or written.
    Usage = 2,
    /// Backup completed and a snapshot was saved, but some files could not be read and are
    /// missing from it (they are listed on stderr and in `--json` output).
    Partial = 3,
    /// `check` found damage (listed on stdout and in `--json`).
    Damage = 4,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> Self {
        ExitCode::from(c as u8)
    }
}

/// The code for a failed command: [`Code::Usage`] if a store error anywhere in the chain says
/// so, else [`Code::Error`].
pub fn for_error(e: &anyhow::Error) -> Code {
    let usage = e
        .chain()
        .filter_map(|c| c.downcast_ref::<cairn_store::Error>())
        .any(cairn_store::Error::is_usage);
    if usage {
        Code::Usage
    } else {
        Code::Error
    }
}
