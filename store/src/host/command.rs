//! Running a command and keeping its output: streamed into the saver (bounded memory, however
//! much it prints), or, for small outputs, into memory. A command that fails is an error
//! carrying its exit status and the end of its stderr.

use super::HostError;
use crate::saver::Saver;
use cairn_format::chunker::ChunkPolicy;
use cairn_format::Id;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};

/// How much of a command's stderr is kept for the error message.
pub const STDERR_TAIL: usize = 4096;

/// A command line.
#[derive(Debug, Clone)]
pub struct CommandLine {
    /// The program (looked up in PATH).
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl CommandLine {
    /// `program args…`.
    pub fn new<I, S>(program: impl Into<OsString>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        CommandLine {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// As a shell would show it (for messages and facts).
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let s = a.to_string_lossy();
                if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c))
                {
                    format!("'{}'", s.replace('\'', r"'\''"))
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn spawn(&self) -> Result<Child, HostError> {
        Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|cause| HostError::Spawn {
                command: self.display(),
                cause,
            })
    }

    /// Run it, chunking its stdout into `saver` as it comes; `inspect` sees every piece of
    /// output as it passes. Returns the content ids and the size. When the command fails
    /// (non-zero exit, signal) the error says how, with the end of its stderr; the blobs
    /// already added are then unreferenced (a later prune removes them).
    pub fn save(
        &self,
        saver: &mut Saver,
        policy: ChunkPolicy,
        inspect: impl FnMut(&[u8]),
    ) -> Result<(Vec<Id>, u64), HostError> {
        let mut child = self.spawn()?;
        let stderr = tail_stderr(&mut child);
        let stdout = child.stdout.take().ok_or_else(|| HostError::Read {
            command: self.display(),
            cause: std::io::Error::other("no stdout pipe"),
        })?;
        let saved = saver.save_reader(
            Inspect {
                inner: stdout,
                inspect,
            },
            policy,
            |_| {},
        );
        let saved = match saved {
            Ok(Ok(s)) => s,
            Ok(Err(cause)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HostError::Read {
                    command: self.display(),
                    cause,
                });
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        };
        let status = child.wait().map_err(|cause| HostError::Read {
            command: self.display(),
            cause,
        })?;
        let stderr = stderr.join().unwrap_or_default();
        self.check(status, stderr)?;
        Ok(saved)
    }

    /// Run it and return its stdout, at most `limit` bytes (more is an error).
    pub fn output(&self, limit: u64) -> Result<Vec<u8>, HostError> {
        let mut child = self.spawn()?;
        let stderr = tail_stderr(&mut child);
        let mut out = Vec::new();
        let read = child
            .stdout
            .take()
            .map(|s| s.take(limit + 1).read_to_end(&mut out));
        if out.len() as u64 > limit {
            // It would block writing the rest.
            let _ = child.kill();
        }
        let status = child.wait().map_err(|cause| HostError::Read {
            command: self.display(),
            cause,
        })?;
        let stderr = stderr.join().unwrap_or_default();
        if let Some(Err(cause)) = read {
            return Err(HostError::Read {
                command: self.display(),
                cause,
            });
        }
        if out.len() as u64 > limit {
            return Err(HostError::Read {
                command: self.display(),
                cause: std::io::Error::other(format!("more than {limit} bytes of output")),
            });
        }
        self.check(status, stderr)?;
        Ok(out)
    }

    fn check(&self, status: ExitStatus, stderr: String) -> Result<(), HostError> {
        if status.success() {
            return Ok(());
        }
        let described = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => status.to_string(),
        };
        Err(HostError::CommandFailed {
            command: self.display(),
            status: described,
            code: status.code(),
            stderr,
        })
    }
}

/// A reader showing what passes through it to a closure.
struct Inspect<R, F> {
    inner: R,
    inspect: F,
}

impl<R: Read, F: FnMut(&[u8])> Read for Inspect<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.inspect)(&buf[..n]);
        Ok(n)
    }
}

/// Read the child's stderr on a thread, keeping its last [`STDERR_TAIL`] bytes.
fn tail_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let pipe = child.stderr.take();
    std::thread::spawn(move || {
        let Some(mut pipe) = pipe else {
            return String::new();
        };
        let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL);
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend(&buf[..n]);
            let excess = tail.len().saturating_sub(STDERR_TAIL);
            tail.drain(..excess);
        }
        String::from_utf8_lossy(tail.make_contiguous()).into_owned()
    })
}

/// The first of `programs` found in PATH.
pub fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failure() {
        let ok = CommandLine::new("sh", ["-c", "printf 'a\\tb\\n'"]);
        assert_eq!(ok.output(100).unwrap(), b"a\tb\n");
        let bad = CommandLine::new("sh", ["-c", "echo partial; echo oops >&2; exit 7"]);
        match bad.output(100) {
            Err(HostError::CommandFailed { code, stderr, .. }) => {
                assert_eq!(code, Some(7));
                assert_eq!(stderr.trim(), "oops");
            }
            other => panic!("{other:?}"),
        }
        let big = CommandLine::new("sh", ["-c", "head -c 1000 /dev/zero"]);
        assert!(big.output(10).is_err());
        assert!(CommandLine::new("/nonexistent/cmd", Vec::<String>::new())
            .output(1)
            .is_err());
        assert_eq!(
            CommandLine::new("sh", ["-c", "a b"]).display(),
            "sh -c 'a b'"
        );
    }
}
