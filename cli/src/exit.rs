//! Process exit codes (documented in the README) and how failures are reported.

use std::fmt;
use std::process::ExitCode;

/// What the process reports to its caller (systemd, cron, scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Everything asked for was done.
    Ok = 0,
    /// The command failed; nothing (or nothing more) was written.
    Error = 1,
    /// Usage error: bad arguments (printed by clap), a [`Usage`] error, or an unusable
    /// repository location or object store setting; nothing was read or written.
    Usage = 2,
    /// Backup completed and a snapshot was saved, but some files could not be read and are
    /// missing from it (they are listed on stderr and in `--json` output).
    Partial = 3,
    /// `check` found damage (listed on stdout and in `--json`).
    Damage = 4,
    /// `host compare`: this host is not fit to receive the snapshot's restore (the reasons
    /// are listed on stdout and in `--json`).
    Unfit = 5,
    /// stdout was closed by its reader (`| head`); the command stopped quietly (128 + SIGPIPE,
    /// what a shell reports for coreutils there).
    StdoutClosed = 141,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> Self {
        ExitCode::from(c as u8)
    }
}

/// A command line that cannot work as given (exit 2), with what to type instead.
#[derive(Debug)]
pub struct Usage {
    /// What is wrong.
    pub message: String,
    /// What to do instead, if there is something to suggest.
    pub hint: Option<String>,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Usage {}

/// A usage error with a hint.
pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage {
        message: message.into(),
        hint: Some(hint.into()),
    })
}

/// Report a failed command on stderr — as text, or with `json` as one JSON object
/// `{"error": {"code": …, "exit": …, "message": …, "hint": …}}` — and return its exit code.
pub fn report(e: &anyhow::Error, json: bool) -> Code {
    if e.chain().any(|c| c.is::<crate::output::StdoutClosed>()) {
        // Its reader stopped reading: end quietly, with the status a shell gives a command
        // that SIGPIPE ended.
        return Code::StdoutClosed;
    }
    let usage = e.chain().find_map(|c| c.downcast_ref::<Usage>());
    let store_errors = || {
        e.chain()
            .filter_map(|c| c.downcast_ref::<cairn_store::Error>())
    };
    let hint = usage
        .and_then(|u| u.hint.clone())
        .or_else(|| store_errors().find_map(|s| s.hint().map(str::to_string)));
    let store_usage = store_errors().any(cairn_store::Error::is_usage);
    let code = if usage.is_some() || store_usage {
        Code::Usage
    } else {
        Code::Error
    };
    let message = format!("{e:#}");
    if json {
        let obj = serde_json::json!({"error": {
            "code": if code == Code::Usage { "usage" } else { "error" },
            "exit": code as u8,
            "message": message,
            "hint": hint,
        }});
        eprintln!("{obj}");
    } else {
        eprintln!("cairn: error: {}", crate::output::printable(&message));
        if let Some(h) = hint {
            eprintln!("hint: {h}");
        }
    }
    code
}

/// Report a command line clap rejected; `--json` anywhere on it makes the report JSON. Help
/// and version requests print as usual.
pub fn report_clap(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if !json
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        e.exit();
    }
    let message = e.render().to_string();
    let message = message
        .trim()
        .trim_start_matches("error: ")
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .collect::<Vec<_>>()
        .join("\n");
    let obj = serde_json::json!({"error": {
        "code": "usage",
        "exit": Code::Usage as u8,
        "message": message.trim(),
        "hint": "run with --help for usage",
    }});
    eprintln!("{obj}");
    Code::Usage.into()
}
