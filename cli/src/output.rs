//! Printing: JSON for machines, text for people, progress bars only on a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::IsTerminal;

/// Print `value` as pretty JSON on stdout (as serialized: JSON escapes what it must, and
/// [`printable`]'s escapes are no JSON).
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_raw(text.as_bytes())
}

/// Write bytes to stdout as they are (JSON, which escapes what it must).
pub fn write_raw(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(bytes)
        .map_err(stdout_error)
}

/// stdout was closed by its reader (`cairn ls latest | head`): the command stops quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Map a write error on stdout: a closed pipe becomes [`StdoutClosed`].
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("writing to stdout")
    }
}

/// Write formatted text to stdout; see [`crate::outln`]. Control characters other than
/// newline and tab are escaped: snapshot fields (host, tags, paths) and messages come from the
/// repository, which may be written by an attacker, and must not drive the terminal.
pub fn write_out(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    write_raw(printable(&args.to_string()).as_bytes())
}

/// Whether stderr carries JSON lines (`--json`), set once at start.
static JSON_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Make [`warn`], [`error`] and [`note`] write JSON lines (`--json`).
pub fn set_json_stderr(on: bool) {
    JSON_STDERR.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Tell the operator something on stderr, beside the command's output: `cairn: LABEL: text`
/// (control characters escaped), or with `--json` a line `{"level": LEVEL, "message": text}`,
/// as log events are written then.
fn say(level: &str, label: &str, text: std::fmt::Arguments<'_>) {
    let text = text.to_string();
    if JSON_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{}", serde_json::json!({"level": level, "message": text}));
    } else {
        eprintln!("cairn: {label}{}", printable(&text));
    }
}

/// A warning on stderr (see [`say`]).
pub fn warn(text: std::fmt::Arguments<'_>) {
    say("WARN", "warning: ", text)
}

/// An error on stderr that does not end the command (see [`say`]).
pub fn error(text: std::fmt::Arguments<'_>) {
    say("ERROR", "error: ", text)
}

/// A remark on stderr (see [`say`]).
pub fn note(text: std::fmt::Arguments<'_>) {
    say("INFO", "note: ", text)
}

/// A remark on stderr without a label (`cairn: text`; see [`say`]).
pub fn remark(text: std::fmt::Arguments<'_>) {
    say("INFO", "", text)
}

/// `s` with control characters other than newline and tab escaped (`\u{1b}`).
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.contains(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `println!` that returns an error instead of panicking when stdout is closed.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// A byte-progress bar on stderr when it is a terminal and the user did not ask for quiet or
/// JSON output; a hidden bar otherwise.
pub fn progress(total: Option<u64>, quiet: bool, json: bool) -> ProgressBar {
    if quiet || json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} {bytes_per_sec} {msg}")
                .expect("valid template"),
        ),
    };
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// The library's progress handle drawing on `bar`.
pub fn to_progress(bar: &ProgressBar) -> cairn_store::progress::Progress {
    struct Bar(ProgressBar);
    impl cairn_store::progress::Show for Bar {
        fn bytes(&self, n: u64) {
            self.0.inc(n);
        }
        fn message(&self, text: String) {
            self.0.set_message(text);
        }
        fn done(&self) {
            self.0.finish_and_clear();
        }
    }
    if bar.is_hidden() {
        return cairn_store::progress::Progress::none();
    }
    cairn_store::progress::Progress::new(Bar(bar.clone()))
}

/// `n` and `noun`, plural unless `n` is 1: `count(1, "file")` is "1 file".
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => match noun.strip_suffix('y') {
            Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
            _ => format!("{n} {noun}s"),
        },
    }
}

/// Human-readable byte count.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// Format nanoseconds since the epoch as RFC 3339 UTC.
pub fn time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub use cairn_store::trees::{path_components as components, path_string as path};

/// Render a path from components for a terminal, unambiguously: as is when it is printable
/// UTF-8, else quoted as GNU `ls` and bash do (`$'/etc/a\nb'`, invalid bytes as `\xHH`), so a
/// name holding a newline cannot pass for two entries.
pub fn quoted_path(components: &[Vec<u8>]) -> String {
    let mut raw = Vec::new();
    for c in components {
        raw.push(b'/');
        raw.extend_from_slice(c);
    }
    if raw.is_empty() {
        raw.push(b'/');
    }
    quoted(&raw)
}

/// Each of `items` [`quoted`], joined by spaces.
pub fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| quoted(i.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `bytes` as is when printable UTF-8, else as a `$'…'` string.
pub fn quoted(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(char::is_control) {
            return s.to_string();
        }
    }
    let mut out = String::from("$'");
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match ch {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped() {
        assert_eq!(printable("host-1\tok\n"), "host-1\tok\n");
        assert_eq!(
            printable("esc\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "esc\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
        );
        assert_eq!(printable("c1\u{9b}2J"), "c1\\u{9b}2J");
    }

    #[test]
    fn counts() {
        assert_eq!(count(1u64, "repository"), "1 repository");
        assert_eq!(count(2u64, "repository"), "2 repositories");
        assert_eq!(count(0u64, "key"), "0 keys");
        assert_eq!(count(3u64, "damaged object"), "3 damaged objects");
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted_path(&[b"etc".to_vec(), b"a b".to_vec()]), "/etc/a b");
        assert_eq!(quoted_path(&[b"a\nb".to_vec()]), "$'/a\\nb'");
        assert_eq!(quoted_path(&[b"x\xff'".to_vec()]), "$'/x\\xff\\''");
        assert_eq!(quoted(b"\x1b[31m"), "$'\\x1b[31m'");
    }
}
